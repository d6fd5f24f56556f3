"""Self-tests of FakeTwilio against a tiny Starlette "app" that answers TwiML and checks signatures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Enqueue, Gather, VoiceResponse

from tests.voice.fake_twilio import FakeTwilio, rewrite_http_client, serve_app

TOKEN = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6"
NUMBER = "+15005550006"
CALLER = "+34600111222"


@dataclass
class App:
    url: str
    received: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def params(self, path: str) -> list[dict[str, str]]:
        return [p for q, p in self.received if q == path]


def twiml(resp: VoiceResponse) -> Response:
    return Response(str(resp), media_type="text/xml")


def make_app(app: App) -> Starlette:
    validator = RequestValidator(TOKEN)

    async def voice(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not validator.validate(str(request.url), form, request.headers.get("X-Twilio-Signature", "")):
            return Response("bad signature", status_code=401)
        path = request.url.path
        app.received.append((path, form))
        r = VoiceResponse()
        if path == "/voice/incoming":
            g = Gather(num_digits=1, action="/voice/menu", input="dtmf speech", timeout=5)
            g.say("Welcome to Threadline. For billing press 1.", language="en-GB", voice="alice")
            r.append(g)
            r.say("We did not get that. Goodbye.")
            r.hangup()
        elif path == "/voice/menu":
            if form.get("Digits") == "1" or "billing" in form.get("SpeechResult", ""):
                r.redirect("/voice/queue")
            else:
                r.say("Unknown option.")
        elif path == "/voice/queue":
            r.append(Enqueue("support", action="/voice/dequeued", wait_url="/voice/wait"))
            r.say("Sorry, nobody is available.")
        elif path == "/voice/wait":
            g = Gather(num_digits=1, action="/voice/wait-choice")
            g.say(f"You are caller {form['QueuePosition']}. Press 9 for a call back.")
            r.append(g)
            r.play("https://example.invalid/hold.mp3")
        elif path == "/voice/wait-choice":
            r.say("We will call you back.")
            r.leave()
        elif path == "/voice/dequeued":
            r.say("Goodbye.")
            r.hangup()
        elif path == "/voice/connect":
            d = Dial()
            d.conference("conv-1", start_conference_on_enter=False, end_conference_on_exit=True, beep=False,
                         wait_url="", status_callback="/voice/conf-status",
                         status_callback_event="start end join leave mute hold modify")
            r.append(d)
        elif path == "/voice/hold-music":
            r.play("https://example.invalid/hold-music.mp3")
        elif path == "/voice/outbound":
            r.say("Hello, this is your call back.", language="es-ES")
            r.play("", digits="ww1")
            r.pause(length=2)
        elif path == "/voice/dial":
            d = Dial(action="/voice/dial-done", caller_id=NUMBER, timeout=20)
            d.client("agent-7", status_callback="/voice/leg-status",
                     status_callback_event="initiated ringing answered completed")
            r.append(d)
        elif path == "/voice/dial-done":
            r.say(f"Dial ended {form['DialCallStatus']}.")
        elif path == "/voice/voicemail":
            r.say("Leave a message after the beep.")
            r.record(action="/voice/vm-done", finish_on_key="#", max_length=120,
                     recording_status_callback="/voice/recording")
        elif path == "/voice/vm-done":
            r.say("Thanks.")
            r.hangup()
        elif path == "/voice/bogus":
            return Response("<Response><Dance/></Response>", media_type="text/xml")
        else:
            return Response(status_code=204)  # status callbacks
        return twiml(r)

    return Starlette(routes=[Route("/voice/{rest:path}", voice, methods=["POST"])])


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[tuple[App, FakeTwilio, Client]]:
    app = App("")
    async with serve_app(make_app(app)) as url, FakeTwilio(auth_token=TOKEN) as tw:
        app.url = url
        yield app, tw, tw.client()


def seqs(params: list[dict[str, str]]) -> list[int]:
    return [int(p["SequenceNumber"]) for p in params]


async def test_inbound_ivr_queue_conference_hold_recording_hangup() -> None:
    async with running() as (app, tw, client):
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/incoming",
                                      status_callback=app.url + "/voice/status")
        first = app.params("/voice/incoming")[0]
        assert first["CallStatus"] == "ringing" and first["Direction"] == "inbound"
        assert first["From"] == CALLER and first["AccountSid"] == tw.account_sid
        assert call.state == "in-progress" and call.pending == "gather"
        assert call.heard[0].text == "Welcome to Threadline. For billing press 1."
        assert (call.heard[0].language, call.heard[0].voice) == ("en-GB", "alice")
        assert tw.requests_to_app[0].twiml is not None and tw.requests_to_app[0].twiml[0].tag == "Gather"

        await call.press("1")
        assert app.params("/voice/menu")[0]["Digits"] == "1"
        assert (call.state, call.queue, call.pending) == ("queued", "support", "gather")
        assert call.said[-1] == "You are caller 1. Press 9 for a call back."
        tw.advance(30)
        await call.tick_wait()  # the wait Gather times out (5 s), the Play runs, the waitUrl is fetched again
        assert call.played == ["https://example.invalid/hold.mp3"]
        assert call.said.count("You are caller 1. Press 9 for a call back.") == 2
        assert app.params("/voice/wait")[1]["QueueTime"] == "35"

        # the router's offer is accepted: the app redirects the caller out of the queue into a conference
        await client.calls(call.sid).update_async(url=app.url + "/voice/connect", method="POST")
        await call.wait_for("in-conference")
        await tw.settle()
        assert call.queue is None and call.conference == "conv-1"
        assert app.params("/voice/dequeued")[0]["QueueResult"] == "redirected"
        assert await client.conferences.list_async(friendly_name="conv-1", status="in-progress") == []
        (conf,) = await client.conferences.list_async(friendly_name="conv-1")
        assert conf.status == "init"

        p = await client.conferences(conf.sid).participants.create_async(
            from_=NUMBER, to="client:agent-7", label="agent", start_conference_on_enter=True)
        assert p.status == "queued"
        leg = await tw.outbound_call(to="client:agent-7")
        await tw.answer(leg)
        assert leg.state == "in-conference"
        (live,) = await client.conferences.list_async(friendly_name="conv-1", status="in-progress")
        assert live.sid == conf.sid
        parts = await client.conferences(conf.sid).participants.list_async()
        assert {x.call_sid for x in parts} == {call.sid, leg.sid}

        await client.conferences(conf.sid).participants(call.sid).update_async(
            hold=True, hold_url=app.url + "/voice/hold-music", hold_method="POST")
        await tw.settle()
        assert tw.conference("conv-1").participants[call.sid].hold
        assert call.heard[-1].url == "https://example.invalid/hold-music.mp3" and call.heard[-1].context == "hold"
        await client.conferences(conf.sid).participants(call.sid).update_async(hold=False)

        rec = await client.calls(call.sid).recordings.create_async(
            recording_status_callback=app.url + "/voice/recording")
        assert rec.status == "in-progress"
        tw.advance(10)
        await client.calls(call.sid).recordings(rec.sid).update_async(status="paused", pause_behavior="skip")
        tw.advance(5)
        await client.calls(call.sid).recordings("Twilio.CURRENT").update_async(status="in-progress")
        tw.advance(3)

        await call.hangup()
        assert call.state == "completed" and leg.state == "completed"
        (fake_rec,) = call.recordings
        assert fake_rec.paused_spans == [(10.0, 15.0, "skip")] and fake_rec.duration == 13
        (rcb,) = app.params("/voice/recording")
        assert rcb["RecordingStatus"] == "completed" and rcb["RecordingDuration"] == "13"
        assert rcb["RecordingSid"] == rec.sid and rcb["CallSid"] == call.sid
        async with httpx.AsyncClient() as http:
            wav = await http.get(rcb["RecordingUrl"] + ".wav")
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"

        events = [(e["StatusCallbackEvent"], e.get("CallSid")) for e in app.params("/voice/conf-status")]
        assert events == [
            ("participant-join", call.sid), ("participant-join", leg.sid), ("conference-start", None),
            ("participant-hold", call.sid), ("participant-unhold", call.sid),
            ("participant-leave", call.sid), ("participant-leave", leg.sid), ("conference-end", None)]
        assert seqs(app.params("/voice/conf-status")) == list(range(8))
        end = app.params("/voice/conf-status")[-1]
        assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
        (status,) = app.params("/voice/status")
        assert status["CallStatus"] == "completed" and status["SequenceNumber"] == "0"
        rest = [(e.method, e.purpose.split("/Accounts/")[1]) for e in tw.rest_requests]
        assert ("POST", f"{tw.account_sid}/Calls/{call.sid}.json") in rest


async def test_outbound_call_status_callbacks_in_order() -> None:
    async with running() as (app, tw, client):
        created = await client.calls.create_async(
            to=CALLER, from_=NUMBER, url=app.url + "/voice/outbound", status_callback=app.url + "/voice/status",
            status_callback_event=["initiated", "ringing", "answered", "completed"], machine_detection="Enable")
        assert created.status == "queued" and created.direction == "outbound-api"
        leg = await tw.outbound_call(to=CALLER)
        assert leg.sid == created.sid
        await tw.settle()
        assert [p["CallStatus"] for p in app.params("/voice/status")] == ["initiated", "ringing"]
        await tw.answer(leg)
        assert leg.state == "completed"  # the TwiML ran out
        assert leg.said == ["Hello, this is your call back."] and leg.heard[0].language == "es-ES"
        assert leg.dtmf_sent == ["ww1"] and leg.heard[-1].length == 2
        voice = app.params("/voice/outbound")[0]
        assert voice["AnsweredBy"] == "human" and voice["CallStatus"] == "in-progress"
        statuses = app.params("/voice/status")
        assert [p["CallStatus"] for p in statuses] == ["initiated", "ringing", "in-progress", "completed"]
        assert seqs(statuses) == [0, 1, 2, 3]
        assert statuses[-1]["CallDuration"] == "2"
        form = next(e for e in tw.rest_requests if e.method == "POST")
        assert [v for k, v in form.pairs if k == "StatusCallbackEvent"] == [
            "initiated", "ringing", "answered", "completed"]
        fetched = await client.calls(leg.sid).fetch_async()
        assert fetched.status == "completed"


async def test_forged_signature_is_refused_by_the_app() -> None:
    app = App("")
    async with serve_app(make_app(app)) as url, FakeTwilio(auth_token="not-the-apps-token") as tw:
        with pytest.raises(AssertionError, match="HTTP 401"):
            await tw.incoming_call(from_=CALLER, to=NUMBER, url=url + "/voice/incoming")
        assert [e.status for e in tw.requests_to_app] == [401]
        assert tw.take_errors() and tw.calls[0].state == "failed"
        ok = await tw.signed_post(url + "/voice/status", {"CallSid": "CA1"}, auth_token=TOKEN)
        forged = await tw.signed_post(url + "/voice/status", {"CallSid": "CA1"},
                                      signature=tw.sign(url + "/voice/status", {"CallSid": "CA2"}, TOKEN))
        assert (ok.status_code, forged.status_code) == (204, 401)


async def test_rest_refuses_bad_credentials_and_accepts_api_keys() -> None:
    async with FakeTwilio(api_keys={"SK" + "1" * 32: "key-secret"}) as tw:
        bad = Client(tw.account_sid, "wrong", http_client=rewrite_http_client(tw.base_url))
        with pytest.raises(TwilioRestException) as info:
            await bad.calls.create_async(to=CALLER, from_=NUMBER, url="https://app.invalid/voice")
        assert info.value.status == 401 and info.value.code == 20003
        keyed = Client("SK" + "1" * 32, "key-secret", tw.account_sid, http_client=rewrite_http_client(tw.base_url))
        assert await keyed.calls.list_async() == []


async def test_speech_leave_from_the_wait_gather_timeout_and_hangup_in_queue() -> None:
    async with running() as (app, tw, _client):
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/incoming")
        await call.say("billing please")
        assert app.params("/voice/menu")[0]["SpeechResult"] == "billing please"
        assert (call.state, call.pending) == ("queued", "gather")  # the Gather of the wait document
        await call.press("9")
        assert app.params("/voice/wait-choice")[0]["Digits"] == "9"
        assert app.params("/voice/dequeued")[0]["QueueResult"] == "leave"
        assert call.said[-2:] == ["We will call you back.", "Goodbye."] and call.state == "completed"

        silent = await tw.incoming_call(from_="+34600999888", to=NUMBER, url=app.url + "/voice/incoming")
        await tw.timeout(silent)  # no actionOnEmptyResult: the next verb runs
        assert silent.said[-1] == "We did not get that. Goodbye." and silent.state == "completed"

        quitter = await tw.incoming_call(from_="+34600777666", to=NUMBER, url=app.url + "/voice/incoming")
        await quitter.press("1")
        await quitter.tick_wait()
        await quitter.hangup()
        assert app.params("/voice/dequeued")[-1]["QueueResult"] == "hangup"
        assert tw.queues["support"].members == []


async def test_dial_client_leg_answer_and_no_answer() -> None:
    async with running() as (app, tw, _client):
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/dial")
        assert call.state == "dialing"
        leg = await tw.outbound_call(to="client:agent-7")
        assert leg.parent is call and leg.direction == "outbound-dial"
        await tw.answer(leg)
        assert call.state == "bridged"
        tw.advance(42)
        await leg.hangup()
        done = app.params("/voice/dial-done")[0]
        assert (done["DialCallStatus"], done["DialCallSid"], done["DialCallDuration"]) == ("completed", leg.sid, "42")
        assert call.said[-1] == "Dial ended completed." and call.state == "completed"
        assert [p["CallStatus"] for p in app.params("/voice/leg-status")] == [
            "initiated", "ringing", "in-progress", "completed"]

        again = await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/dial")
        await tw.no_answer(await tw.outbound_call(to="client:agent-7"))
        assert again.said[-1] == "Dial ended no-answer."


async def test_record_verb_posts_action_and_status_callback() -> None:
    async with running() as (app, tw, _client):
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/voicemail")
        assert call.pending == "record" and call.heard[-1].kind == "beep"
        tw.advance(7)
        await call.press("#")
        done = app.params("/voice/vm-done")[0]
        assert (done["RecordingDuration"], done["Digits"]) == ("7", "#")
        (cb,) = app.params("/voice/recording")
        assert cb["RecordingSource"] == "RecordVerb" and cb["RecordingUrl"] == done["RecordingUrl"]
        assert call.state == "completed"


async def test_unknown_verb_fails_loudly() -> None:
    async with running() as (app, tw, _client):
        with pytest.raises(AssertionError, match="unknown TwiML verb <Dance>"):
            await tw.incoming_call(from_=CALLER, to=NUMBER, url=app.url + "/voice/bogus")
        assert tw.take_errors() == [f"unknown TwiML verb <Dance> in {app.url}/voice/bogus"]
