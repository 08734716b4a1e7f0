"""The BARC DSL (`common`) that generated programs import with `from common import *`."""
