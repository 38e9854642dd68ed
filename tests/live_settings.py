"""Settings of gateways that tests start for bursts of new users: Parley's own, with a fast
password hasher, so that a burst of signups measures connections and queueing rather than
PBKDF2 on the test machine's cores (the other suites lower the hasher the same way)."""
from chatproject.settings import *  # noqa: F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
