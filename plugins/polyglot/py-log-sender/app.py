"""A development sender in Python (componentize-py): writes each code to the server log.

For every code it writes one info line through the `otp:plugin/log` import:

    OTP for <credential-id> via <channel>: <code> (<first|resend>, expires at <ms>) "<message>" request <request-id>

where <message> is the text a real sender would deliver, in the language the client's
`Accept-Language` header prefers among English, French and German (English otherwise), and
<request-id> is the request's id (contract 0.2.0), the one on the server's own log lines and
in the answer's `x-request-id` header:

    Your one-time code is 123456. It expires at 12:34:56 UTC.

Channels "default", "email" and "sms" are accepted; any other channel fails as
`undeliverable`. Never use it in production: codes must not reach a log.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.sending import Message, SendError_Undeliverable, SendKind
from wit_world.imports import log
from wit_world.imports.types import RequestContext

CHANNELS = ("default", "email", "sms")

TEMPLATES = {
    "en": "Your one-time code is {code}. It expires at {time} UTC.",
    "fr": "Votre code à usage unique est {code}. Il expire à {time} UTC.",
    "de": "Ihr Einmalcode lautet {code}. Er läuft um {time} UTC ab.",
}


def language(accept_language: str | None) -> str:
    """The supported language the client prefers most (RFC 9110 quality values)."""
    best, best_q = "en", 0.0
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        # Among equal weights the first listed wins.
        if primary in TEMPLATES and q > best_q:
            best, best_q = primary, q
    return best


def clock(expires_at_ms: int) -> str:
    """HH:MM:SS (UTC) of a time in milliseconds since the Unix epoch."""
    seconds = (expires_at_ms // 1000) % 86400
    return f"{seconds // 3600:02}:{seconds // 60 % 60:02}:{seconds % 60:02}"


def text(message: Message, lang: str) -> str:
    return TEMPLATES[lang].format(code=message.code, time=clock(message.expires_at))


class Sending(exports.Sending):
    def send(self, message: Message, context: RequestContext) -> None:
        if message.channel not in CHANNELS:
            raise Err(SendError_Undeliverable(f"no route for channel {message.channel!r}"))
        kind = "first" if message.kind == SendKind.FIRST else "resend"
        body = text(message, language(context.accept_language))
        log.log(
            log.Level.INFO,
            f"OTP for {message.credential_id} via {message.channel}: {message.code} "
            f'({kind}, expires at {message.expires_at}) "{body}" request {context.request_id}',
        )
