"""The portal's pages (server-rendered HTML): sign-in, catalog, model card, deploy, deployments, a
deployment, playground, usage and cost. Pages only read; every change goes through the portal's JSON
routes (`actions.py`), which are the management API's own handlers."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from aimi.api.services import services
from aimi.errors import AimiError, EngineUnavailable, NotFound
from aimi.inference.fleet import Fleet
from aimi.platform.catalog import Offer
from aimi.platform.deployments import DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_TOKENS_PER_MINUTE, slug
from aimi.platform.reports import UsageFigures, UsageReports
from aimi.platform.usage import parse_since
from aimi.web import charts
from aimi.web.sessions import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    SESSION_COOKIE,
    PortalSession,
    SessionStore,
    check_origin,
    clear_cookie,
    current,
    same_token,
    set_cookie,
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PERIODS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "365d": "Last year"}
CAPABILITIES = {"chat": "Chat", "tools": "Tool calls", "json_mode": "JSON mode"}


def _money(value: Decimal | float | int) -> str:
    text = f"{Decimal(value):.6f}".rstrip("0")
    return "$" + (text + "00" if text.endswith(".") else text)


def _num(value: int | float) -> str:
    return f"{value:,}"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _safe_next(target: str | None) -> str:
    """Only a portal page of this server (never another site) after sign-in."""
    if target and target.startswith("/portal/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/portal/catalog"


def templates_for(directory: str) -> Jinja2Templates:
    templates = Jinja2Templates(directory=directory)
    env = templates.env
    env.autoescape = True  # every template, whatever its name
    env.filters.update(money=_money, num=_num, when=_when, urlpart=lambda s: quote(str(s), safe=""))
    env.globals.update(CAPABILITIES=CAPABILITIES, PERIODS=PERIODS)
    return templates


async def deployment_status(fleet: Fleet, name: str) -> tuple[str, str | None]:
    """`ready`, or `failed` and why (the fleet loads a deployment it does not serve yet)."""
    try:
        await fleet.get(name)
    except EngineUnavailable as exc:
        return "failed", exc.message
    except NotFound:
        return "deleted", None
    return "ready", None


class Pages:
    def __init__(self, sessions: SessionStore, templates: Jinja2Templates) -> None:
        self.sessions = sessions
        self.templates = templates

    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        r.add_api_route("/", self.root, methods=["GET"])
        r.add_api_route("/portal", self.home, methods=["GET"])
        r.add_api_route("/portal/", self.home, methods=["GET"])
        r.add_api_route("/portal/login", self.login_form, methods=["GET"])
        r.add_api_route("/portal/login", self.login, methods=["POST"])
        r.add_api_route("/portal/logout", self.logout, methods=["POST"])
        r.add_api_route("/portal/catalog", self.catalog, methods=["GET"])
        r.add_api_route("/portal/catalog/{model}", self.model, methods=["GET"])
        r.add_api_route("/portal/deploy/{model}", self.deploy, methods=["GET"])
        r.add_api_route("/portal/deployments", self.deployments, methods=["GET"])
        r.add_api_route("/portal/deployments/{name}", self.deployment, methods=["GET"])
        r.add_api_route("/portal/playground", self.playground, methods=["GET"])
        r.add_api_route("/portal/usage", self.usage, methods=["GET"])
        r.add_api_route("/portal/usage.csv", self.usage_csv, methods=["GET"])
        return r

    # -- helpers --------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: PortalSession | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "csrf": session.csrf if session else "",
                "path": request.url.path,
                **context,
            },
            status_code=status_code,
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def _signed_in(self, request: Request) -> PortalSession | RedirectResponse:
        session = current(request, self.sessions)
        if session is not None:
            return session
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/portal/login?next={quote(target, safe='')}", status_code=303)

    def _not_found(self, request: Request, session: PortalSession, error: AimiError) -> HTMLResponse:
        return self.render(request, "error.html", session, status_code=error.status, message=error.message)

    # -- sign-in --------------------------------------------------------------------------------

    async def root(self) -> RedirectResponse:
        return RedirectResponse("/portal/", status_code=307)

    async def home(self) -> RedirectResponse:
        return RedirectResponse("/portal/catalog", status_code=303)

    async def login_form(
        self, request: Request, next: str | None = None, error: str | None = None
    ) -> Response:
        if current(request, self.sessions) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        token = secrets.token_urlsafe(32)
        message = {"key": "That is not the admin key.", "form": "The form expired; sign in again."}.get(
            error or ""
        )
        response = self.render(
            request, "login.html", None, login_csrf=token, next=_safe_next(next), error=message
        )
        set_cookie(request, response, LOGIN_COOKIE, token, LOGIN_TTL_S)
        return response

    async def login(self, request: Request) -> Response:
        check_origin(request)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        target = _safe_next(form.get("next"))
        back = f"/portal/login?next={quote(target, safe='')}"
        if not same_token(form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE, "")):
            return RedirectResponse(back + "&error=form", status_code=303)
        key = form.get("key", "").strip()
        keys = services(request).platform.keys
        if not key or not await asyncio.to_thread(keys.is_admin, key):
            await asyncio.sleep(0.5)  # a guess costs time
            return RedirectResponse(back + "&error=key", status_code=303)
        session = self.sessions.open(who=f"portal (admin key ending {key[-4:]})")
        response = RedirectResponse(target, status_code=303)
        set_cookie(request, response, SESSION_COOKIE, session.id, int(self.sessions.ttl_s))
        clear_cookie(request, response, LOGIN_COOKIE)
        return response

    async def logout(self, request: Request) -> Response:
        check_origin(request)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        session = current(request, self.sessions)
        if session is not None and same_token(form.get(CSRF_FIELD), session.csrf):
            self.sessions.close(session.id)
            services(request).platform.keys.revoke_tokens(session.id)
        response = RedirectResponse("/portal/login", status_code=303)
        clear_cookie(request, response, SESSION_COOKIE)
        return response

    # -- catalog --------------------------------------------------------------------------------

    async def catalog(
        self,
        request: Request,
        capability: str | None = None,
        provider: str | None = None,
        q: str | None = None,
    ) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        offers: list[Offer] = await asyncio.to_thread(platform.catalog.list)
        deployed = await asyncio.to_thread(platform.deployments.list)
        providers = sorted({o.provider for o in offers})
        shown = [
            o
            for o in offers
            if (not capability or o.capabilities.get(capability))
            and (not provider or o.provider == provider)
            and (not q or q.lower() in o.name.lower())
        ]
        counts = {o.name: sum(d.model == o.name for d in deployed) for o in offers}
        return self.render(
            request, "catalog.html", session, offers=shown, providers=providers, counts=counts,
            capability=capability or "", provider=provider or "", q=q or "",
        )  # fmt: skip

    async def model(self, request: Request, model: str) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        try:
            offer = await asyncio.to_thread(platform.catalog.get, model)
        except NotFound as exc:
            return self._not_found(request, session, exc)
        deployments = [d for d in await asyncio.to_thread(platform.deployments.list) if d.model == offer.name]
        example = offer.cost(1000, 500)
        return self.render(
            request, "model.html", session, offer=offer, deployments=deployments, example=example,
            base=str(request.base_url).rstrip("/"),
        )  # fmt: skip

    async def deploy(self, request: Request, model: str) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        try:
            offer = await asyncio.to_thread(platform.catalog.get, model)
        except NotFound as exc:
            return self._not_found(request, session, exc)
        deployments = await asyncio.to_thread(platform.deployments.list)
        taken = {d.name for d in deployments}
        name, n = slug(offer.name), 2
        while name in taken:
            name, n = f"{slug(offer.name)}-{n}", n + 1
        existing = [d for d in deployments if d.model == offer.name]
        in_default = any(d.project == "default" for d in existing)
        return self.render(
            request, "deploy.html", session, offer=offer, name=name, existing=existing,
            project=name if in_default else "default", projects=sorted({d.project for d in deployments}),
            rpm=DEFAULT_REQUESTS_PER_MINUTE, tpm=DEFAULT_TOKENS_PER_MINUTE,
            base=str(request.base_url).rstrip("/"), example=offer.cost(1000, 500),
        )  # fmt: skip

    # -- deployments ----------------------------------------------------------------------------

    async def deployments(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        found = await asyncio.to_thread(platform.deployments.list)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        usage = {
            f.deployment: f
            for f in await asyncio.to_thread(lambda: UsageReports(platform.db).by_deployment(since=today))
        }
        fleet = services(request).fleet
        rows = [(d, *(await deployment_status(fleet, d.name)), usage.get(d.name)) for d in found]
        return self.render(
            request, "deployments.html", session, rows=rows, base=str(request.base_url).rstrip("/")
        )

    async def deployment(self, request: Request, name: str) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        try:
            deployment = await asyncio.to_thread(platform.deployments.get, name)
        except NotFound as exc:
            return self._not_found(request, session, exc)
        keys = await asyncio.to_thread(platform.keys.show, name)
        status, why = await deployment_status(services(request).fleet, name)
        policy = deployment.safety.to_json()
        day = datetime.now(UTC) - timedelta(hours=24)
        usage = await asyncio.to_thread(lambda: UsageReports(platform.db).total(deployment=name, since=day))
        terms = await asyncio.to_thread(platform.deployments.terms_acceptance, name)
        return self.render(
            request, "deployment.html", session, d=deployment, keys=keys, status=status, why=why,
            policy=policy, usage=usage, terms=terms, endpoint=f"{str(request.base_url).rstrip('/')}"
            f"/deployments/{deployment.name}",
        )  # fmt: skip

    async def playground(self, request: Request, deployment: str | None = None) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        platform = services(request).platform
        found = await asyncio.to_thread(platform.deployments.list)
        chosen = deployment if any(d.name == deployment for d in found) else (found[0].name if found else "")
        offers = {o.name: o for o in await asyncio.to_thread(platform.catalog.list)}
        choices = [
            {
                "name": d.name,
                "model": d.model,
                "context": offers[d.model].context_length if d.model in offers else 0,
            }
            for d in found
        ]
        return self.render(
            request, "playground.html", session, choices=choices, chosen=chosen,
            base=str(request.base_url).rstrip("/"),
        )  # fmt: skip

    # -- usage and cost -------------------------------------------------------------------------

    def _usage_filter(self, deployment: str | None, since: str | None) -> tuple[str | None, str, datetime]:
        period = since if since in PERIODS else "7d"
        return deployment or None, period, parse_since(period)

    async def usage(
        self, request: Request, deployment: str | None = None, since: str | None = None
    ) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        name, period, start = self._usage_filter(deployment, since)
        await services(request).platform.inflight.written()  # this server's answers are in the figures
        reports = UsageReports(services(request).platform.db)

        def read() -> tuple[list[UsageFigures], list[UsageFigures], UsageFigures, list[Any], list[str]]:
            return (
                reports.daily(deployment=name, since=start),
                reports.by_deployment(deployment=name, since=start),
                reports.total(deployment=name, since=start),
                reports.recent(deployment=name, since=start),
                reports.deployments(),
            )

        daily, per_deployment, total, recent, known = await asyncio.to_thread(read)
        return self.render(
            request, "usage.html", session, charts=_usage_charts(daily, per_deployment), total=total,
            per_deployment=per_deployment, recent=recent, known=known, deployment=name or "", period=period,
        )  # fmt: skip

    async def usage_csv(
        self, request: Request, deployment: str | None = None, since: str | None = None
    ) -> Response:
        session = self._signed_in(request)
        if isinstance(session, RedirectResponse):
            return session
        name, period, start = self._usage_filter(deployment, since)
        await services(request).platform.inflight.written()  # this server's answers are in the figures
        reports = UsageReports(services(request).platform.db)
        daily = await asyncio.to_thread(lambda: reports.daily(deployment=name, since=start))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["day", "deployment", "requests", "prompt_tokens", "completion_tokens",
                         "total_tokens", "cost_usd", "rate_limited", "content_filter_blocks",
                         "mean_latency_ms"])  # fmt: skip
        for f in daily:
            writer.writerow([f.day, f.deployment, f.requests, f.prompt_tokens, f.completion_tokens,
                             f.total_tokens, f.cost, f.rate_limited, f.blocked, f.latency_ms])  # fmt: skip
        filename = f"aimi-usage-{name or 'all'}-{period}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )


def _usage_charts(daily: list[UsageFigures], per_deployment: list[UsageFigures]) -> dict[str, Any]:
    days = sorted({f.day or "" for f in daily})

    def by_day(pick: Any) -> list[float]:
        sums = dict.fromkeys(days, 0.0)
        for f in daily:
            sums[f.day or ""] += float(pick(f))
        return [sums[d] for d in days]

    names = [f.deployment or "" for f in per_deployment]
    cost_fmt = lambda v: _money(Decimal(str(round(v, 6))))  # noqa: E731
    return {
        "requests_per_day": charts.bar_chart(
            "Requests per day", days, [charts.Series("requests", by_day(lambda f: f.requests), "s0")]
        ),
        "tokens_per_day": charts.bar_chart(
            "Tokens per day",
            days,
            [
                charts.Series("input", by_day(lambda f: f.prompt_tokens), "s0"),
                charts.Series("output", by_day(lambda f: f.completion_tokens), "s1"),
            ],
        ),
        "cost_per_day": charts.bar_chart(
            "Cost per day (USD)", days, [charts.Series("cost", by_day(lambda f: f.cost), "s2")], fmt=cost_fmt
        ),
        "refused_per_day": charts.bar_chart(
            "429s and content-filter blocks per day",
            days,
            [
                charts.Series("429", by_day(lambda f: f.rate_limited), "warn"),
                charts.Series("blocked", by_day(lambda f: f.blocked), "bad"),
            ],
        ),
        "requests_per_deployment": charts.bar_chart(
            "Requests per deployment",
            names,
            [charts.Series("requests", [f.requests for f in per_deployment], "s0")],
        ),
        "tokens_per_deployment": charts.bar_chart(
            "Tokens per deployment",
            names,
            [
                charts.Series("input", [f.prompt_tokens for f in per_deployment], "s0"),
                charts.Series("output", [f.completion_tokens for f in per_deployment], "s1"),
            ],
        ),
        "cost_per_deployment": charts.bar_chart(
            "Cost per deployment (USD)",
            names,
            [charts.Series("cost", [float(f.cost) for f in per_deployment], "s2")],
            fmt=cost_fmt,
        ),
    }
