"""``llmgw chat``: talk to a model through a gateway's conversations (``/api/chat``).

One-shot with a question (an argument, or standard input when it is not a terminal); otherwise an
interactive session: answers stream in as Markdown (Rich), slash commands change the model,
system prompt and temperature, show or save the history, or start a new conversation, and
Ctrl-C cancels the answer being written, not the session. The gateway keeps the history and fits
it to the model's window (docs/chat.md); input lines are remembered in ``$LLMGW_HOME/chat_history``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmgw.cli.output import emit_json, stdout
from llmgw.cli.state import state
from llmgw.errors import LlmgwError, UsageError

__all__ = ["chat"]

HELP = """\
/model NAME     answer with another model or alias (the conversation goes with it)
/system TEXT    set the system prompt
/temperature X  set the temperature (0-2; "default" to unset)
/history        show the conversation so far
/save FILE      write the conversation to FILE as Markdown
/new            start a new conversation
/quit           leave (or Ctrl-D)"""


def _client(ctx: typer.Context) -> Any:
    from llmgw.admin.conversation_remote import RemoteConversations

    st = state(ctx)
    url = st.url
    if url is None:  # the local gateway, as `llmgw serve` would listen
        server = st.settings.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host  # noqa: S104
        url = f"http://{host}:{server.port}"
    return RemoteConversations(url, st.token, auth=None if st.token else st.login(url))


class Session:
    """One conversation's state on the client: the id, and what the next turn sends."""

    def __init__(self, client: Any, model: str | None, system: str | None, **settings: Any) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.settings = {k: v for k, v in settings.items() if v is not None}
        self.conversation: str | None = None
        self.pending = ""
        """The question being answered."""
        self.usage: dict[str, Any] | None = None
        self._sent_system: str | None = None

    def body(self, text: str) -> dict[str, Any]:
        """The next turn's body."""
        body: dict[str, Any] = {"message": text, **self.settings}
        if self.conversation is None:
            if self.model is None:
                raise UsageError("name a model first", hint="llmgw chat -m PROVIDER/MODEL")
            body["model"] = self.model
        else:
            body["conversation_id"] = self.conversation
            if self.model is not None:
                body["model"] = self.model
        if self.system is not None and self.system != self._sent_system:
            body["system"] = self.system
        return body

    def sent(self, conversation: str | None) -> None:
        """The turn went through."""
        self.conversation = conversation or self.conversation
        self._sent_system = self.system


def _one_shot(session: Session, question: str, as_json: bool) -> None:
    if as_json:
        emit_json(session.client.turn(session.body(question)))
        return
    out = sys.stdout
    for kind, value in session.client.stream(session.body(question)):
        if kind == "text":
            out.write(value)
            out.flush()
    out.write("\n")


def _answer(session: Session) -> Any:
    """Stream one answer as Markdown; Ctrl-C stops it (the turn is then not kept)."""
    from rich.live import Live
    from rich.markdown import Markdown

    con = stdout()
    text = ""
    events = session.client.stream(session.body(session.pending))
    try:
        with Live(Markdown(""), console=con, refresh_per_second=12, transient=False) as live:
            for kind, value in events:
                if kind == "conversation":
                    session.sent(value)
                elif kind == "text":
                    text += value
                    live.update(Markdown(text))
                elif kind == "usage":
                    session.usage = value
    except KeyboardInterrupt:
        events.close()  # hangs up: the server stops the upstream and stores nothing
        con.print("[cancelled]", style="yellow", markup=False)
        return None
    usage = session.usage
    if usage:
        con.print(
            f"[dim]{usage.get('prompt_tokens')} in, {usage.get('completion_tokens')} out[/dim]",
            highlight=False,
        )
    return text


def _command(session: Session, line: str) -> bool:
    """Run one slash command; False to leave."""
    con = stdout()
    name, _, arg = line[1:].partition(" ")
    arg = arg.strip()
    if name in ("quit", "exit", "q"):
        return False
    if name == "model" and arg:
        session.model = arg
        con.print(f"model: {arg}", highlight=False)
    elif name == "system":
        session.system = arg or None
        con.print("system prompt set" if arg else "system prompt cleared")
    elif name == "temperature":
        if arg == "default":
            session.settings.pop("temperature", None)
        else:
            try:
                value = float(arg)
            except ValueError:
                con.print("[red]/temperature takes a number from 0 to 2[/red]")
                return True
            session.settings["temperature"] = value
        con.print(f"temperature: {session.settings.get('temperature', 'default')}")
    elif name == "new":
        session.conversation = None
        session._sent_system = None
        con.print("new conversation")
    elif name == "history":
        if session.conversation is None:
            con.print("[dim]no messages yet[/dim]")
        for m in session.client.messages(session.conversation) if session.conversation else ():
            con.print(f"[bold]{m['role']}[/bold]: {m['content'] or ''}", highlight=False)
    elif name == "save" and arg:
        if session.conversation is None:
            con.print("[dim]nothing to save yet[/dim]")
        else:
            Path(arg).expanduser().write_text(
                session.client.export_markdown(session.conversation), encoding="utf-8"
            )
            con.print(f"saved to {arg}", highlight=False)
    else:
        con.print(HELP, highlight=False)
    return True


def _history_file(ctx: typer.Context) -> Path:
    return Path(state(ctx).settings.home) / "chat_history"


def _repl(ctx: typer.Context, session: Session) -> None:
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        readline = None  # type: ignore[assignment]
    history = _history_file(ctx)
    if readline is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
    con = stdout()
    con.print(
        f"llmgw chat with {session.client.url} (model {session.model or 'not set'}); "
        "/help for commands, Ctrl-C stops an answer, Ctrl-D leaves",
        highlight=False,
    )
    try:
        while True:
            try:
                line = input("you> ").strip()
            except KeyboardInterrupt:
                con.print()
                continue
            except EOFError:
                con.print()
                return
            if not line:
                continue
            if line.startswith("/"):
                if not _command(session, line):
                    return
                continue
            session.pending = line
            try:
                _answer(session)
            except LlmgwError as exc:  # shown in place; the session goes on
                con.print(f"[red]Error:[/red] {exc.message}", highlight=False)
    finally:
        if readline is not None:
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.set_history_length(1000)
            with contextlib.suppress(OSError):
                readline.write_history_file(history)


def chat(
    ctx: typer.Context,
    question: Annotated[
        str | None,
        typer.Argument(help="Ask this and print the answer (- or none with piped input: stdin)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="provider/model or alias (required to start)."),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", "-t", min=0, max=2, help="0 to 2.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Longest answer, in tokens.")
    ] = None,
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", help="Continue this conversation (its id)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One-shot: print the whole answer as JSON.")
    ] = False,
) -> None:
    """Chat with a model through the gateway, which keeps the conversation.

    With a question (or piped input): one answer, streamed to stdout (--json: the whole answer
    with its conversation id and what was trimmed). Without, on a terminal: an interactive
    session with Markdown answers and slash commands (/help). Talks to --url (else the local
    `llmgw serve` address) with --token or the stored `llmgw login`.
    """
    if question == "-" or (question is None and not sys.stdin.isatty()):
        question = sys.stdin.read().strip()
        if not question:
            raise UsageError("the question on standard input is empty")
    client = _client(ctx)
    try:
        session = Session(client, model, system, temperature=temperature, max_tokens=max_tokens)
        session.conversation = conversation
        if question is not None:
            if model is None and conversation is None:
                raise UsageError("name a model", hint="llmgw chat -m PROVIDER/MODEL 'question'")
            _one_shot(session, question, as_json)
            return
        if as_json:
            raise UsageError(
                "--json needs a question", hint="llmgw chat -m MODEL --json 'question'"
            )
        _repl(ctx, session)
    finally:
        client.close()
