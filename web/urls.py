"""Pages of the browser app (web.views). Each page answers with and without a trailing slash."""
from django.urls import re_path

from . import views as web

urlpatterns = [
    re_path(r"^$", web.app_shell, name="app"),
    re_path(r"^c/(?P<conversation_id>[0-9]{1,18})/?$", web.app_shell, name="conversation"),
    re_path(r"^login/?$", web.login_page, name="login"),
    re_path(r"^signup/?$", web.signup_page, name="signup"),
    re_path(r"^logout/?$", web.logout_page, name="logout"),
    re_path(r"^moderation/?$", web.moderation_page, name="moderation"),
    re_path(r"^settings/?$", web.settings_page, name="settings"),
]
