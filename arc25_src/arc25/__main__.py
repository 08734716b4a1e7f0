import sys

from arc25.cli import main

sys.exit(main())
