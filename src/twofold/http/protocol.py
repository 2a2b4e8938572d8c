"""The HTTP/1.1 protocol ``twofold serve`` runs: uvicorn's, answering problem details.

A request the parser refuses (a control character in a header, a broken request line)
never reaches the ASGI app, so uvicorn answers it itself, as plain text. This subclass
answers it as ``application/problem+json`` like every other refusal, so a client handles
one kind of error body whatever refused its request.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from twofold.http.problems import FieldProblem, ProblemError, encode_problem, problem

__all__ = ["ProblemHttpToolsProtocol"]

_BAD_REQUEST = encode_problem(
    ProblemError(
        problem(
            400,
            "bad-request",
            "Bad Request",
            "the request is not valid HTTP/1.1 (the parser refused its request line, a header "
            "or its framing); nothing was recorded; correct the request and send it again",
            errors=[FieldProblem("request", "is not valid HTTP/1.1")],
        )
    ),
    None,
)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request it cannot parse gets problem details."""

    def send_400_response(self, msg: str) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"content-type: application/problem+json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_BAD_REQUEST))
        self.transport.write(b"".join(head) + _BAD_REQUEST)
        self.transport.close()
