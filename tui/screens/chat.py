"""Chat: the playground on the gateway's conversations (``/api/chat``), streamed.

The screen is the conversation list (``ConversationList``: new, continue, rename, delete after
a confirmation), the provider and model pickers fed by the model catalog (``/api/models``), a
line with the generation settings (every one ``/api/chat`` takes, edited in a form), the
conversation pane (``ChatLog``, where errors are shown in place) and the prompt. It reaches the
gateway only through the app's ``ChatSource`` (``RemoteChat`` with the dashboard's URL and key or
login). The answer streams in an async worker on the UI's loop, so the screen never blocks;
Escape cancels that worker, which closes the connection (the server stops the model and stores
nothing). In local mode the screen takes a server's URL and an API key first (prefilled with
this host's ``llmgw serve`` address).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.widgets import Button, Input, OptionList, Select, Static

from llmgw.admin.chat import ChatDelta, ChatDone, ChatMessage, ChatOpened
from llmgw.tui.format import hhmm
from llmgw.tui.screens.base import describe
from llmgw.tui.screens.chat_base import LOCAL_CHAT_NOTE, ChatBase, summary
from llmgw.tui.widgets.dialogs import ConfirmScreen, Field, FormScreen, required

__all__ = ["LOCAL_CHAT_NOTE", "ChatScreen", "summary"]


class ChatScreen(ChatBase):
    """Conversations, pickers, settings, the conversation and a prompt."""

    def on_mount(self) -> None:
        self.sub_title = self.TITLE_TEXT
        self.conversations.border_title = "Conversations"
        self._layout()
        self._show_settings()
        if self.source is not None:
            self.load_all()

    # -- catalog and conversations --------------------------------------------------------
    def action_refresh(self) -> None:
        """Reload the model catalog and the conversation list."""
        if self.source is not None:
            self.load_all()

    @work(exclusive=True, group="chat-load", exit_on_error=False)
    async def load_all(self) -> None:
        """The catalog and the conversations; a failure shows stale and tries again later."""
        if self._retry is not None:
            self._retry.stop()
        source = self.source
        if source is None:
            return
        try:
            catalog = await source.catalog()
            records = await source.conversations()
        except Exception as exc:  # shown to the person, never a traceback
            why = describe(exc)
            if self.stale_since is None:
                self.notify(why, title="Chat: models failed", severity="error", markup=False)
                self.stale_since = hhmm(self.llmgw.now())
            self.set_status(f"stale since {self.stale_since}: {why}", stale=True)
            self._retry = self.set_timer(self.llmgw.poll_interval, self.load_all)
            return
        if self.stale_since is not None:
            self.notify("Connection restored", title="Chat")
        self.stale_since = None
        self.catalog = catalog
        self._fill_providers()
        self.conversations.show(records, self.conversation_id)
        if not self.streaming:
            self.set_status(
                f"{len(catalog)} models at {source.url}; Enter sends, Escape stops"
                if catalog
                else f"{source.url} lists no models: check the server's [[providers]]"
            )

    @work(exclusive=True, group="chat-list", exit_on_error=False)
    async def reload_list(self) -> None:
        """The conversation list again (after a turn, a rename or a delete)."""
        if self.source is None:
            return
        try:
            records = await self.source.conversations()
        except Exception as exc:  # a failed refresh keeps the old list
            self.notify(describe(exc), title="Chat: conversations", severity="error", markup=False)
            return
        self.conversations.show(records, self.conversation_id)

    def _fill_providers(self) -> None:
        providers = sorted({m.provider for m in self.catalog}, key=lambda p: (p == "alias", p))
        select: Select[str] = self.query_one("#chat-provider", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(p, p) for p in providers])
            if isinstance(current, str) and current in providers:
                select.value = current
            elif providers:
                select.value = providers[0]
        self._fill_models()

    def _fill_models(self, want: str | None = None) -> None:
        provider = self.query_one("#chat-provider", Select).value
        models = [m for m in self.catalog if m.provider == provider]
        select: Select[str] = self.query_one("#chat-model", Select)
        current = want or select.value
        select.set_options([(m.id, m.id) for m in models])
        ids = [m.id for m in models]
        if isinstance(current, str) and current in ids:
            select.value = current
        elif ids:
            select.value = ids[0]

    @on(Select.Changed, "#chat-provider")
    def _provider_changed(self) -> None:
        self._fill_models()

    def pick_model(self, model: str | None) -> None:
        """Set both pickers to ``model`` (a conversation's), when the catalog has it."""
        choice = next((m for m in self.catalog if m.id == model), None)
        if choice is None:
            return
        with self.prevent(Select.Changed):
            self.query_one("#chat-provider", Select).value = choice.provider
        self._fill_models(choice.id)

    @property
    def model(self) -> str | None:
        """The model picked."""
        value = self.query_one("#chat-model", Select).value
        return value if isinstance(value, str) else None

    # -- the conversation list ------------------------------------------------------------
    @on(OptionList.OptionSelected, "#chat-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.open_conversation(event.option.id)

    @work(exclusive=True, group="chat-open", exit_on_error=False)
    async def open_conversation(self, conversation_id: str) -> None:
        """Show a stored conversation and continue it with its model and settings."""
        if self.source is None:
            return
        if self.streaming:
            self.action_stop()
        try:
            messages = await self.source.messages(conversation_id)
        except Exception as exc:
            self.set_status(describe(exc), stale=True)
            return
        rec = self.conversations.record(conversation_id) or {}
        self.conversation_id = conversation_id
        self.conversation_model = rec.get("model")
        self.settings = {"system": rec.get("system"), **(rec.get("settings") or {})}
        self._show_settings()
        self.pick_model(self.conversation_model)
        self.log_pane.show(messages)
        self.conversations.show(self.conversations.records, conversation_id)
        self.query_one("#prompt", Input).focus()
        self.set_status(f"{rec.get('title') or 'conversation'}: {len(messages)} messages")

    def action_new(self) -> None:
        """Start a new conversation (stops a stream first); the settings stay."""
        if self.streaming:
            self.action_stop()
        self.conversation_id = None
        self.conversation_model = None
        self.log_pane.show([])
        self.conversations.show(self.conversations.records, None)
        self.query_one("#prompt", Input).focus()
        self.set_status("new conversation: the first message starts it")

    def _target(self) -> dict[str, Any] | None:
        """The conversation rename/delete act on: the list's highlighted one if the list has
        the focus, else the one on screen."""
        ref = self.conversations.highlighted_id
        if self.focused is not self.conversations or ref is None:
            ref = self.conversation_id
        return self.conversations.record(ref)

    def action_rename(self) -> None:
        """Ask for a new title."""
        rec = self._target()
        if rec is None or self.source is None:
            self.notify("No conversation to rename yet", severity="warning")
            return
        form = FormScreen(
            "Rename the conversation",
            [Field("title", "title", value=str(rec.get("title") or ""), parse=required)],
            submit="Rename",
        )
        self.app.push_screen(form, lambda values: self._renamed(rec["id"], values))

    def _renamed(self, conversation_id: str, values: dict[str, Any] | None) -> None:
        if values:
            self.change(conversation_id, "rename", values["title"])

    def action_delete(self) -> None:
        """Delete the highlighted conversation after a confirmation."""
        rec = self._target()
        if rec is None or self.source is None:
            return
        question = (
            f"Delete the conversation {rec.get('title')!r} and its "
            f"{rec.get('messages') or 0} messages? This cannot be undone."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.change(rec["id"], "delete")

        self.app.push_screen(ConfirmScreen(question, action="Delete"), answered)

    @work(group="chat-change", exit_on_error=False)
    async def change(self, conversation_id: str, what: str, title: str = "") -> None:
        """Rename or delete on the server, then refresh the list."""
        assert self.source is not None
        try:
            if what == "rename":
                await self.source.rename(conversation_id, title)
            else:
                await self.source.delete(conversation_id)
        except Exception as exc:
            why = describe(exc)
            self.notify(why, title=f"Chat: {what} failed", severity="error", markup=False)
            self.set_status(f"{what} failed: {why}", stale=True)
            return
        if what == "delete" and conversation_id == self.conversation_id:
            self.action_new()
        self.set_status("renamed" if what == "rename" else "deleted")
        await self.reload_list().wait()

    # -- connect (local mode) -------------------------------------------------------------
    @on(Button.Pressed, "#chat-connect-button")
    @on(Input.Submitted, "#chat-url")
    @on(Input.Submitted, "#chat-key")
    def connect(self) -> None:
        """Use the URL and key given on the screen."""
        url = self.query_one("#chat-url", Input).value.strip()
        key = self.query_one("#chat-key", Input).value.strip()
        connect = self.llmgw.connect_chat
        if connect is None:  # pragma: no cover - the CLI always wires it
            self.set_status("this dashboard cannot connect to a server", stale=True)
            return
        try:
            self.llmgw.chat = connect(url, key)
        except Exception as exc:  # a bad URL or key: say so and stay
            self.set_status(describe(exc), stale=True)
            return
        self._layout()
        self.on_screen_resume()
        self.query_one("#prompt", Input).focus()
        self.load_all()

    # -- chat -----------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def send(self, event: Input.Submitted) -> None:
        """Send the prompt as the next turn and stream the answer."""
        text = event.value.strip()
        if not text or self.source is None:
            return
        if self.streaming:
            self.notify("An answer is streaming: Escape stops it", severity="warning")
            return
        model = self.model
        if model is None:
            self.set_status("pick a model first", stale=True)
            return
        event.input.value = ""
        pane = self.log_pane
        if self.conversation_id is not None and model != self.conversation_model:
            pane.note(f"model: {self.conversation_model} → {model} (the context goes with it)")
        pane.add_user(text)
        pane.start_answer()
        self.answer = ""
        self.streaming = True
        self.set_status(f"{model}: streaming… (Escape stops)")
        self.ask(text, model)

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def ask(self, text: str, model: str) -> None:
        """Stream one turn into the answer box (an async worker: the UI stays live)."""
        source = self.source
        assert source is not None
        given = {k: v for k, v in self.settings.items() if v is not None and k != "system"}
        new = self._new_turn = self.conversation_id is None
        try:
            async for event in source.turn(
                self.conversation_id, text, model=model,
                system=self.settings.get("system"), settings=given,
            ):  # fmt: skip
                if isinstance(event, ChatOpened):
                    self.conversation_id = event.conversation_id or self.conversation_id
                elif isinstance(event, ChatDelta):
                    self.answer += event.text
                    self.log_pane.update_answer(self.answer)
                else:
                    self._finish(event, model)
        except Exception as exc:  # an error before or during the stream: shown, never raised
            self._fail(exc, new)
        finally:
            self.streaming = False

    def _finish(self, done: ChatDone, model: str) -> None:
        self.streaming = False
        self.last = done
        self.conversation_model = model
        self.log_pane.update_answer(self.answer)
        self.set_status(summary(done))
        self.reload_list()

    def _fail(self, exc: Exception, new: bool) -> None:
        self.streaming = False
        why = describe(exc)
        pane = self.log_pane
        if self.answer:
            pane.update_answer(self.answer)
        else:
            pane.query(".chat-answer").last().remove()
        pane.add_error(exc, why)
        if new:
            self.conversation_id = None  # a first turn that failed made no conversation
        self.notify(why, title="Chat failed", severity="error", markup=False)
        self.set_status(f"failed (not stored): {why}", stale=True)

    def action_pick(self) -> None:
        """Focus the provider picker (Enter opens it; Tab goes on to the model picker)."""
        self.query_one("#chat-provider", Select).focus()

    def action_conversations(self) -> None:
        """Focus the conversation list."""
        self.conversations.focus()

    def action_stop(self) -> None:
        """Stop the answer being streamed (closes the connection); else leave the prompt, or
        go back to it from anywhere else."""
        if self.streaming:
            self.workers.cancel_group(self, "chat")
            self.streaming = False
            self.log_pane.update_answer(self.answer + " [stopped]")
            if self._new_turn:  # nothing was stored: the conversation does not exist
                self.conversation_id = None
            self.set_status("stopped: the connection was closed; this turn is not stored")
        elif self.focused is self.query_one("#prompt"):
            self.query_one("#chat-log").focus()
        else:
            self.query_one("#prompt", Input).focus()

    def check_action(self, action: str, parameters: tuple[Any, ...]) -> bool | None:
        """Everything but Escape needs a server."""
        if action in ("refresh", "new", "settings", "rename", "delete", "pick", "conversations"):
            return self.source is not None
        return True

    def history(self) -> list[ChatMessage]:
        """What the pane shows, as messages (for tests and captures)."""
        out = []
        for w in self.log_pane.query(".chat-user, .chat-answer").results(Static):
            role = "user" if w.has_class("chat-user") else "assistant"
            out.append(ChatMessage(role, str(w.render())))
        return out
