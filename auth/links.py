"""The pages behind e-mailed links: "Forgot your password?" and choosing a password from a link.

``/login/forgot`` asks for an e-mail address and always gives the same answer,
whether an account uses it or not; requests count against two Redis-backed
limits (Flask-Limiter), per address typed and per client. Over the per-address
limit the answer is still the same, but nothing is sent (no mailbox is flooded);
over the per-client limit the page answers 429.

A link (``/account/invitation/<token>``, ``/account/reset/<token>``) puts its
token in the signed session cookie and redirects to ``/account/new-password``,
so the token leaves the address bar and the browser history at once. That page
says plainly when a link is unknown, used, expired or outdated by a password
change, and changes nothing then; otherwise it sets the password (same policy
as everywhere), which uses the link up and ends every session of the user, and
sends the user to the login page.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from auth import scope as auth_scope
from kilowatch.accounts import account_mail, passwords, tokens

log = logging.getLogger(__name__)

LINK_KEY = "account_link"
SENT = ("If an account uses this address, a link to choose a new password is on its way "
        "to it. The link works once, within 2 hours. Check your spam folder too.")


class ForgotForm(FlaskForm):
    """The e-mail address of the account."""

    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])


class NewPasswordForm(FlaskForm):
    """The new password, twice."""

    new = PasswordField("New password", validators=[
        DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("new", message="The two passwords differ.")])


def _address_key() -> str:
    return "reset-address:" + (request.form.get("email") or "").strip().lower()[:254]


def _neutral_answer(_limit):
    """Answer a request over the per-address limit exactly like any other, sending nothing."""
    log.warning("password reset throttled for an address, from %s", request.remote_addr)
    return current_app.make_response(
        render_template("auth/forgot_password.html", form=ForgotForm(formdata=None), sent=SENT))


def forgot_password():
    """Ask for an address and e-mail a reset link if an active account uses it."""
    form = ForgotForm()
    if request.method == "GET":
        return render_template("auth/forgot_password.html", form=form)
    if not form.validate_on_submit():
        error = ("This form has expired; please try again." if "csrf_token" in form.errors
                 else "Enter your e-mail address.")
        return render_template("auth/forgot_password.html", form=form, error=error), 400
    with auth_scope.connection() as conn:
        account_mail.request_reset(conn, form.email.data,
                                   base_url=auth_scope.app_settings().base_url)
    return render_template("auth/forgot_password.html", form=ForgotForm(formdata=None),
                           sent=SENT)


def open_link(token: str):
    """Keep a link's token in the session and show the page without it in the address."""
    session[LINK_KEY] = token[:tokens.MAX_TOKEN_LENGTH + 1]
    return redirect(url_for("auth.new_password"))


def _problem(error: tokens.LinkError):
    status = 404 if error.problem == "unknown" else 410
    return render_template("auth/new_password.html", problem=str(error)), status


def _form_page(form: NewPasswordForm, link: tokens.Link, status: int = 200):
    return render_template("auth/new_password.html", form=form, link=link), status


def new_password():
    """Let the holder of a valid link choose the account's password."""
    token = session.get(LINK_KEY) or ""
    try:
        with auth_scope.connection() as conn:
            link = tokens.check(conn, token)
    except tokens.LinkError as error:
        return _problem(error)
    form = NewPasswordForm()
    if not form.validate_on_submit():
        return _form_page(form, link, 400 if request.method == "POST" else 200)
    try:
        new_hash = passwords.hash_password(form.new.data)
    except passwords.PasswordPolicyError as error:
        form.new.errors = [str(error).capitalize() + "."]
        return _form_page(form, link, 400)
    try:
        with auth_scope.connection() as conn:
            link = tokens.redeem(conn, token, new_hash)
    except tokens.LinkError as error:  # used by another tab a moment ago
        return _problem(error)
    session.pop(LINK_KEY, None)
    log.info("user %s chose a password through a %s link", link.user_id, link.purpose)
    return redirect(url_for("auth.login", password_set=1))


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def add_link_pages(blueprint: Blueprint, limiter: Limiter) -> None:
    """Add the forgotten-password page and the link pages to the auth blueprint."""
    throttle_address = limiter.limit(
        lambda: current_app.config["KILOWATCH_RESET_LIMIT_ADDRESS"], key_func=_address_key,
        methods=["POST"], scope="reset-address", on_breach=_neutral_answer)
    throttle_ip = limiter.limit(
        lambda: current_app.config["KILOWATCH_RESET_LIMIT_IP"], key_func=get_remote_address,
        methods=["POST"], scope="reset-ip")
    blueprint.add_url_rule("/login/forgot", "forgot_password",
                           throttle_ip(throttle_address(forgot_password)),
                           methods=["GET", "POST"])
    for purpose, path in tokens.LINK_PATHS.items():
        blueprint.add_url_rule(f"{path}<token>", f"open_{purpose}_link", open_link)
    blueprint.add_url_rule("/account/new-password", "new_password", new_password,
                           methods=["GET", "POST"])
    blueprint.after_request(_no_store)
