"""The demo users' credentials: kept in MEDAI_HOME/credentials.json so that a restart keeps them.

The file is the one place the clear-text passwords and tokens live (the database holds only their
hashes), so it is written mode 0600, atomically. A user the file does not know (first start, or the
file was deleted) gets a fresh password; a token whose hash is gone from the database is re-issued.
"""

import json
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model

from medai.accounts.models import ApiToken, hash_token
from medai.accounts.services import api_token_create
from medai.runtime.services import RunningService
from tenants.demo import USERS, demo_load

FILE_NAME = "credentials.json"


def credentials_prepare(*, home: Path, base_url: str, triton: RunningService | None) -> dict:
    """Load the demo tenants and users; return what credentials.json will hold (written once the web is up)."""
    path = home / FILE_NAME
    known = {u["username"]: u for u in json.loads(path.read_text())["users"]} if path.exists() else {}
    usernames = [username for username, *_ in USERS]
    existing = set(get_user_model().objects.filter(username__in=usernames).values_list("username", flat=True))
    passwords = {name: known.get(name, {}).get("password") or secrets.token_urlsafe(12) for name in usernames}
    # Hashing a password costs ~0.4 s: users whose password the file already holds keep theirs untouched.
    to_set = {name: None if name in existing and name in known else passwords[name] for name in usernames}
    users = []
    for demo in demo_load(passwords=to_set):
        token = known.get(demo.username, {}).get("token")
        if not token or not ApiToken.objects.filter(key_hash=hash_token(token), user=demo.user).exists():
            token = api_token_create(user=demo.user, name="medai up")
        users.append({"username": demo.username, "password": passwords[demo.username], "role": demo.role,
                      "organization": demo.organization, "region": demo.region, "token": token})
    return {
        "base_url": base_url,
        "dicomweb_url": f"{base_url}/dicomweb",
        "triton_url": triton.url if triton else None,
        "triton_http_url": triton.http_url if triton else None,
        "users": users,
    }


def credentials_write(home: Path, credentials: dict) -> Path:
    """Replace credentials.json atomically, never readable by others, not even for a moment."""
    path = home / FILE_NAME
    temporary = path.with_name(f".{FILE_NAME}.tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump(credentials, file, ensure_ascii=False, indent=2)
    os.replace(temporary, path)
    return path
