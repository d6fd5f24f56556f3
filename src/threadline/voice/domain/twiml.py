"""TwiML for each moment of a call, built with the ``twilio`` library's ``VoiceResponse`` (pure: it only
builds XML). The voice API answers Twilio's webhooks with these; ``Urls`` names where each step posts
back (the channel's public hook URL plus ``/voice/...``, so Twilio's signatures validate behind a proxy).

Flow instructions (``threadline.flows.domain``: ``Say``, ``Ask``, ``Enqueue``, ``Voicemail``, ``Hangup``,
``Handoff``…) are rendered by ``render_turn``: sayings become ``<Say>`` in the caller's language (or
``<Play>`` of the node's audio), a question becomes a ``<Gather>`` whose answer comes back to the gather
URL, and the terminal instructions enqueue, record a voicemail or hang up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from threadline.voice.domain.calls import locale_of, text

VOICES = {"en": "en-US", "es": "es-ES", "it": "it-IT"}  # <Say language=…> per locale


def language(locale: str) -> str:
    return VOICES.get(locale_of(locale), "en-US")


@dataclass(frozen=True, slots=True)
class Urls:
    """Where the steps of one call post back: ``base`` is the channel's public ``…/hooks/{key}/voice``."""

    base: str
    call_id: int

    def _u(self, step: str, **extra: str) -> str:
        return f"{self.base}/{step}?" + urlencode({"call": self.call_id, **extra})

    @property
    def gather(self) -> str:
        return self._u("gather")

    @property
    def wait(self) -> str:
        return self._u("wait")

    @property
    def wait_key(self) -> str:
        return self._u("wait-key")

    @property
    def queue_result(self) -> str:
        return self._u("queue-result")

    @property
    def conference_events(self) -> str:
        return self._u("conference")

    @property
    def recording(self) -> str:
        return self._u("recording")

    @property
    def voicemail_done(self) -> str:
        return self._u("voicemail")

    @property
    def transcription(self) -> str:
        return self._u("transcription")

    @property
    def callback_status(self) -> str:
        return self._u("status", leg="callback")

    @property
    def agent_status(self) -> str:
        return self._u("status", leg="agent")

    def leg_status(self, leg: str) -> str:
        """The status callback of a participant we add (a transfer target, a supervisor): ``leg`` names it."""
        return self._u("status", leg=leg)

    def queue_name(self) -> str:
        return f"tl-call-{self.call_id}"


def _say(node: VoiceResponse | Gather, line: str, locale: str) -> None:
    node.say(line, language=language(locale))


def say_lines(lines: Iterable[str], locale: str) -> str:
    r = VoiceResponse()
    for line in lines:
        _say(r, line, locale)
    return str(r.to_xml())


def hangup(lines: Iterable[str], locale: str) -> str:
    r = VoiceResponse()
    for line in lines:
        _say(r, line, locale)
    r.hangup()
    return str(r.to_xml())


def enqueue(urls: Urls, lines: Sequence[str], locale: str) -> str:
    """Say the lines, then wait in the call's own Twilio queue: Threadline's router, not Twilio's queue,
    decides who answers; the wait URL plays the announcements and music; the action URL learns how the
    wait ended (left for a callback, redirected to an agent, hung up)."""
    r = VoiceResponse()
    for line in lines:
        _say(r, line, locale)
    r.enqueue(urls.queue_name(), action=urls.queue_result, method="POST", wait_url=urls.wait, wait_url_method="POST")
    return str(r.to_xml())


def waiting(urls: Urls, lines: Sequence[str], locale: str, *, callback_key: str | None, music_url: str | None,
            pause_seconds: int) -> str:
    """One turn of the wait loop (Twilio fetches the wait URL again when it ends): the place and the
    estimated wait, the callback offer (a key press posts to the wait-key URL), then music or silence."""
    r = VoiceResponse()
    g = r.gather(num_digits=1, action=urls.wait_key, method="POST", timeout=1) if callback_key else None
    target: VoiceResponse | Gather = g if g is not None else r
    for line in lines:
        _say(target, line, locale)
    if callback_key:
        _say(target, text("callback_offer", locale, key=callback_key), locale)
    if music_url:
        target.play(music_url)
    else:
        target.pause(length=pause_seconds)
    return str(r.to_xml())


def leave() -> str:
    r = VoiceResponse()
    r.leave()
    return str(r.to_xml())


def conference(urls: Urls, name: str, *, music_url: str | None, locale: str = "en") -> str:
    """The customer joins the call's conference (labelled ``customer``): they hear music until an agent
    arrives, and the conference ends when they leave; its events come back to the conference URL."""
    r = VoiceResponse()
    _say(r, text("connecting", locale), locale)
    d = r.dial()
    d.conference(name, start_conference_on_enter=False, end_conference_on_exit=True, wait_url=music_url or "",
                 beep=False, participant_label="customer", status_callback=urls.conference_events,
                 status_callback_event="start end join leave hold", status_callback_method="POST")
    return str(r.to_xml())


def voicemail(urls: Urls, prompt: str, locale: str, max_seconds: int) -> str:
    r = VoiceResponse()
    _say(r, prompt, locale)
    r.record(action=urls.voicemail_done, method="POST", max_length=max_seconds, play_beep=True,
             recording_status_callback=urls.recording, recording_status_callback_method="POST",
             transcribe=True, transcribe_callback=urls.transcription)
    r.hangup()
    return str(r.to_xml())


def ask(urls: Urls, lines: Sequence[str], locale: str, *, prompt: str, num_digits: int | None,
        timeout_seconds: int, speech: bool, finish_on_key: str | None = None) -> str:
    """The lines said so far, then a question whose answer (keys, or speech where asked) posts to the
    gather URL; no answer at all posts an empty one (``actionOnEmptyResult``) so the flow counts a try."""
    r = VoiceResponse()
    for line in lines:
        _say(r, line, locale)
    g = r.gather(input="dtmf speech" if speech else "dtmf", action=urls.gather, method="POST",
                 timeout=timeout_seconds, num_digits=num_digits, finish_on_key=finish_on_key,
                 action_on_empty_result=True, language=language(locale))
    if prompt:
        _say(g, prompt, locale)
    return str(r.to_xml())
