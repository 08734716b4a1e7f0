"""Run the kaggle CLI: check it is there and has credentials, stream its output with any secret masked, pass its status.

arc25 never reads or passes a credential itself: the kaggle CLI finds its own (kaggle
2.x: $KAGGLE_API_TOKEN, ~/.kaggle/access_token, the OAuth ~/.kaggle/credentials.json,
kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle, or
KAGGLE_USERNAME + KAGGLE_KEY). arc25 only checks that one of them exists, by name,
so a missing one is one clear line instead of the CLI's traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from arc25.errors import UserError
from arc25.kaggle.dataset import kaggle_config_dirs, secret_values

INSTALL_HINT = "the kaggle CLI is not installed: pip install -e \".[kaggle]\" (or pip install kaggle)"
CREDENTIALS_HINT = ("no Kaggle credentials found: create a token at https://www.kaggle.com/settings/api and "
                    "`export KAGGLE_API_TOKEN=...` or save it to ~/.kaggle/access_token (chmod 600), "
                    "or run `kaggle auth login`")
PLACEHOLDER_USER = "your-kaggle-username"
TOKEN_RE = re.compile("KGAT" + r"_[A-Za-z0-9_\-]+")  # split: this file ships in the arc25 wheel
MASK = "***"


def kaggle_executable() -> str:
    found = shutil.which("kaggle")
    if not found:
        raise UserError(INSTALL_HINT)
    return found


def credential_sources(env: dict[str, str] | None = None) -> list[str]:
    """Where the kaggle CLI would find credentials: names only, never values."""
    env = os.environ if env is None else env
    found = [name for name in ("KAGGLE_API_TOKEN",) if env.get(name)]
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        found.append("KAGGLE_USERNAME/KAGGLE_KEY")
    home = Path(env.get("HOME") or Path.home())
    files = [d / "kaggle.json" for d in kaggle_config_dirs(env)]
    files += [home / ".kaggle" / name for name in ("access_token", "access_token.txt", "credentials.json")]
    return found + [str(p) for p in files if p.is_file()]


def require_credentials(env: dict[str, str] | None = None) -> None:
    if not credential_sources(env):
        raise UserError(CREDENTIALS_HINT)


def require_username(username: str, where: str = "kaggle.username") -> None:
    if not username or username == PLACEHOLDER_USER:
        raise UserError(f"{where} is not set: pass --set kaggle.username=YOUR_NAME (or a [kaggle] table in "
                        "--config F.toml)")


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return TOKEN_RE.sub(MASK, text)


def run_kaggle(args: list[str]) -> int:
    """`kaggle ARGS`: the command line, then its output line by line (masked), then its exit status."""
    executable = kaggle_executable()
    require_credentials()
    secrets = secret_values()
    print(mask("$ kaggle " + " ".join(args), secrets), flush=True)
    try:
        proc = subprocess.Popen([executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except OSError as exc:
        raise UserError(f"{executable}: cannot run the kaggle CLI ({exc.strerror})") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(mask(line, secrets))
        sys.stdout.flush()
    code = proc.wait()
    if code != 0:
        print(f"kaggle exited with status {code}", file=sys.stderr)
    return code
