"""Server-rendered login, logout and change-password pages, with CSRF and throttling.

Signing out is a POST carrying the session's CSRF token, so that another site
cannot sign a user out with a link or an image; a GET of ``/logout`` only shows
a page with the sign-out button. Signing out ends every session of the user.

Failed logins count against two Redis-backed limits (Flask-Limiter): one per
account (the e-mail typed) and one per client address. When either is used
up the login form answers 429 without checking the password. Unknown e-mail,
wrong password and deactivated account all get the same message; a right
one-time password past its 24 hours is told so. The change-password form's
check of the current password is throttled the same way: a wrong one counts
against the user (10 per 15 minutes) and the client address (the login's
limit); past either the form answers 429 without checking. The ``next`` of the
login page is followed only to a path of this site (:func:`safe_next`). The
pages of e-mailed links ("Forgot your password?", invitations) are in
:mod:`auth.links`.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms import BooleanField, EmailField, PasswordField, ValidationError
from wtforms.validators import DataRequired, EqualTo, Length

from auth import scope as auth_scope
from auth import sessions
from auth.links import ForgotForm, add_link_pages
from kilowatch.access import system_scope
from kilowatch.accounts import passwords, users
from kilowatch.redis_client import client_options
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

GENERIC_ERROR = "Wrong e-mail or password."
EXPIRED_ONE_TIME = ("This one-time password has expired. Ask your administrator for a new one, "
                    "or use \"Forgot your password?\".")
NOTICES = {"expired": "Your session has ended; please sign in again.",
           "password_set": "Your password is set. Sign in with it."}


class LoginRefused(Exception):
    """A login attempt that fails; the message is what the login page shows."""


class LoginForm(FlaskForm):
    """E-mail and password, plus "remember me"."""

    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(),
                                                     Length(max=passwords.MAX_LENGTH)])
    remember = BooleanField("Keep me signed in on this device")


class ChangePasswordForm(FlaskForm):
    """The current password and the new one, twice."""

    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password", validators=[
        DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("new", message="The two new passwords differ.")])


def _account_key() -> str:
    return "account:" + (request.form.get("email") or "").strip().lower()[:254]


def _login_failed(_response) -> bool:
    return bool(g.get("login_failed") or g.get("password_check_failed"))


def _user_key() -> str:
    return f"user:{current_user.id}" if current_user.is_authenticated else "user:none"


def _password_check_failed(_response) -> bool:
    return bool(g.get("password_check_failed"))


def safe_next(target: str | None) -> str:
    """Return ``target`` when it is a path of this site, else ``/``.

    Browsers drop tabs and newlines from a URL and read a backslash as ``/``, so
    ``/<tab>/evil.example`` would leave the site: a target with a control
    character, a backslash, a scheme or a host (percent-decoded too) goes to ``/``.
    """
    if not target or len(target) > 2000:
        return "/"
    for candidate in (target, unquote(target)):
        if (not candidate.startswith("/") or candidate[1:2] in ("/", "\\")
                or any(c == "\\" or not c.isprintable() for c in candidate)):
            return "/"
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return "/"
    return target


def _verify(conn, email: str, password: str) -> dict | None:
    account = users.find_login(conn, system_scope("login"), email)
    if account is None or not account["active"]:
        passwords.verify_password(None, password)
        return None
    if not passwords.verify_password(account["password_hash"], password):
        return None
    return account


def authenticate(email: str, password: str) -> int:
    """Return the id of the active account with this e-mail and password; raise LoginRefused."""
    with auth_scope.connection() as conn:
        account = _verify(conn, email, password)
        if account is None:
            raise LoginRefused(GENERIC_ERROR)
        if users.password_expired(account):
            raise LoginRefused(EXPIRED_ONE_TIME)
        new_hash = None
        if passwords.needs_rehash(account["password_hash"]):
            new_hash = passwords.HASHER.hash(password)
        users.record_login(conn, system_scope("login"), account["id"], new_hash)
        return account["id"]


def login():
    """Show the login form and sign the user in."""
    form = LoginForm()
    if request.method == "GET":
        notice = next((text for arg, text in NOTICES.items() if request.args.get(arg)), None)
        return render_template("auth/login.html", form=form, notice=notice)
    if not form.validate_on_submit():
        error = ("This form has expired; please try again." if "csrf_token" in form.errors
                 else "Enter your e-mail and password.")
        return render_template("auth/login.html", form=form, error=error), 400
    try:
        user_id = authenticate(form.email.data, form.password.data)
    except LoginRefused as refused:
        g.login_failed = True
        log.warning("failed login for %r from %s: %s", form.email.data, request.remote_addr,
                    refused)
        return render_template("auth/login.html", form=form, error=str(refused)), 401
    sessions.start(user_id, remember=bool(form.remember.data))
    user = auth_scope.load_user(str(user_id))
    login_user(user)
    log.info("login of user %s from %s", user_id, request.remote_addr)
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(safe_next(request.args.get("next")))


def logout():
    """Show the sign-out button; on a POST with this session's CSRF token, sign the user out."""
    if request.method == "GET":
        return render_template("auth/logout.html")
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as error:
        log.warning("sign-out of user %s refused: %s", current_user.id, error)
        return render_template("auth/logout.html",
                               error="This sign-out button has expired; please try again."), 400
    sessions.end_all(current_user.id)
    logout_user()
    return redirect(url_for("auth.login"))


def change_password():
    """Let the logged-in user change their own password."""
    form = ChangePasswordForm()
    forced = current_user.must_change_password
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("auth/change_password.html", form=form, forced=forced), status
    with auth_scope.connection() as conn:
        known = _verify(conn, current_user.email, form.current.data)
    if known is None:
        g.password_check_failed = True
        log.warning("wrong current password for user %s from %s", current_user.id,
                    request.remote_addr)
        form.current.errors = ["That is not your current password."]
        return render_template("auth/change_password.html", form=form, forced=forced), 400
    try:
        new_hash = passwords.hash_password(form.new.data)
    except passwords.PasswordPolicyError as error:
        form.new.errors = [str(error).capitalize() + "."]
        return render_template("auth/change_password.html", form=form, forced=forced), 400
    with auth_scope.connection() as conn:
        users.change_own_password(conn, current_user.scope, new_hash)
    # The change ended every session of the user; this one starts afresh.
    remember = bool(session.permanent)
    user_id = current_user.id
    sessions.start(user_id, remember=remember)
    login_user(auth_scope.load_user(str(user_id)))
    return render_template("auth/change_password.html", form=ChangePasswordForm(formdata=None),
                           forced=False, done=True)


def _too_many(error: RateLimitExceeded):
    if error.response is not None:  # a limit that answers in its own way (on_breach)
        return error.response
    if request.endpoint == "auth.forgot_password":
        message = "Too many requests from your network. Wait an hour, then try again."
        return render_template("auth/forgot_password.html", form=ForgotForm(formdata=None),
                               error=message), 429
    if request.endpoint == "auth.change_password":
        message = "Too many wrong current passwords. Wait a few minutes, then try again."
        return render_template("auth/change_password.html", form=ChangePasswordForm(formdata=None),
                               forced=current_user.must_change_password, error=message), 429
    if request.endpoint == "auth.login":
        message = "Too many failed attempts. Wait a few minutes, then try again."
        return render_template("auth/login.html", form=LoginForm(formdata=None),
                               error=message), 429
    return {"error": "too many requests"}, 429


def init_login(server: Flask, settings: Settings) -> None:
    """Wire Flask-Login, the login pages and the login throttles into the Flask server."""
    login_manager = LoginManager()
    login_manager.user_loader(auth_scope.load_user)
    login_manager.login_view = "auth.login"
    login_manager.init_app(server)
    limiter = Limiter(get_remote_address, app=server, storage_uri=settings.redis_url,
                      key_prefix=f"{settings.redis_prefix}:limits", strategy="moving-window",
                      headers_enabled=False,
                      # Bounded like every Redis call, so a hung Redis gives a 503, not a hang.
                      storage_options=client_options(settings))
    server.extensions["kilowatch_limiter"] = limiter
    throttle_account = limiter.limit(
        lambda: current_app.config["KILOWATCH_LOGIN_LIMIT_ACCOUNT"], key_func=_account_key,
        methods=["POST"], deduct_when=_login_failed, scope="login-account")
    throttle_ip = limiter.limit(
        lambda: current_app.config["KILOWATCH_LOGIN_LIMIT_IP"], key_func=get_remote_address,
        methods=["POST"], deduct_when=_login_failed, scope="login-ip")
    throttle_password_check = limiter.limit(
        lambda: current_app.config["KILOWATCH_PASSWORD_CHECK_LIMIT"], key_func=_user_key,
        methods=["POST"], deduct_when=_password_check_failed, scope="password-check")
    blueprint = Blueprint("auth", __name__, template_folder="templates")
    blueprint.add_url_rule("/login", "login", throttle_ip(throttle_account(login)),
                           methods=["GET", "POST"])
    blueprint.add_url_rule("/logout", "logout", logout, methods=["GET", "POST"])
    blueprint.add_url_rule("/account/password", "change_password",
                           throttle_ip(throttle_password_check(change_password)),
                           methods=["GET", "POST"])
    add_link_pages(blueprint, limiter)
    # The sign-out form on the auth pages posts this token (as the navbar's does).
    blueprint.context_processor(lambda: {"csrf_token": generate_csrf})
    server.register_blueprint(blueprint)
    server.register_error_handler(RateLimitExceeded, _too_many)
