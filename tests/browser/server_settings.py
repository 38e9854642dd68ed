"""Settings of the daphne process the browser tests drive: Parley's own, with static files
served straight from the source tree (no collectstatic step between editing and testing)."""
from chatproject.settings import *  # noqa: F401,F403

WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
