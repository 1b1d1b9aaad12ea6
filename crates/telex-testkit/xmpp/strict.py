"""XMPP scenarios driven with aioxmpp, a client stricter than slixmpp: it matches iq replies by
their 'from', checks stream-management counts and kills the stream on a count too high.

Usage: python strict.py SCENARIO --port P [--domain D]
Each scenario asserts what it expects and exits non-zero with a message naming what failed.
The users alice, bob and eve (password "pw") must exist; the test creates them.
"""

import argparse
import asyncio
import logging
import sys
import time
from datetime import timedelta

import aioxmpp
import aioxmpp.blocking
import aioxmpp.carbons
import aioxmpp.connector
import aioxmpp.dispatcher
import aioxmpp.misc  # registers Message.xep0203_delay
import aioxmpp.nonza
import aioxmpp.ping
import aioxmpp.protocol
import aioxmpp.roster
import aioxmpp.ssl_transport
import aioxmpp.stream
import aioxmpp.xso

TIMEOUT = 15


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


# XEP-0352: aioxmpp has no module for it; the feature and nonzas are defined here.
@aioxmpp.nonza.StreamFeatures.as_feature_class
class CSIFeature(aioxmpp.xso.XSO):
    TAG = ("urn:xmpp:csi:0", "csi")


class CSIActive(aioxmpp.xso.XSO):
    TAG = ("urn:xmpp:csi:0", "active")


class CSIInactive(aioxmpp.xso.XSO):
    TAG = ("urn:xmpp:csi:0", "inactive")


class PlainConnector(aioxmpp.connector.STARTTLSConnector):
    """Plain TCP without STARTTLS (the server allows SCRAM in the clear on loopback)."""

    async def connect(self, loop, metadata, domain, host, port, negotiation_timeout, base_logger=None):
        features = asyncio.Future()
        stream = aioxmpp.protocol.XMLStream(to=domain, features_future=features, base_logger=base_logger)
        transport, _ = await aioxmpp.ssl_transport.create_starttls_connection(
            loop, lambda: stream, host=host, port=port, peer_hostname=host, server_hostname=domain, use_starttls=True
        )
        stream.deadtime_hard_limit = timedelta(seconds=negotiation_timeout)
        return transport, stream, await features


class Peer:
    """One aioxmpp client: what it received, by kind."""

    def __init__(self, args, user, resource, roster_ver=None):
        self.jid = aioxmpp.JID.fromstr(f"{user}@{args.domain}/{resource}")
        sec = aioxmpp.make_security_layer("pw", no_verify=True)._replace(tls_required=False)
        self.client = aioxmpp.Client(
            self.jid,
            sec,
            override_peer=[("127.0.0.1", args.port, PlainConnector())],
            max_initial_attempts=1,
            negotiation_timeout=timedelta(seconds=TIMEOUT),
        )
        self.client.resumption_timeout = 60
        self.disco = self.client.summon(aioxmpp.DiscoClient)
        self.roster = self.client.summon(aioxmpp.RosterClient)
        self.blocking = self.client.summon(aioxmpp.BlockingClient)
        self.carbons = self.client.summon(aioxmpp.CarbonsClient)
        if roster_ver is not None:
            self.roster.import_from_json(roster_ver)
        self.messages = []
        self.presences = []
        self.failed = None
        msgs = self.client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
        for t in (aioxmpp.MessageType.CHAT, aioxmpp.MessageType.NORMAL, aioxmpp.MessageType.ERROR):
            msgs.register_callback(t, None, lambda m: self.messages.append((time.monotonic(), m)))
        pres = self.client.summon(aioxmpp.dispatcher.SimplePresenceDispatcher)
        for t in (aioxmpp.PresenceType.AVAILABLE, aioxmpp.PresenceType.UNAVAILABLE):
            pres.register_callback(t, None, lambda p: self.presences.append(p))
        self.client.on_failure.connect(lambda e: setattr(self, "failed", e))
        self.stack = None

    async def __aenter__(self):
        self.stack = self.client.connected()
        self.stream = await asyncio.wait_for(self.stack.__aenter__(), TIMEOUT)
        return self

    async def __aexit__(self, *exc):
        await self.stack.__aexit__(*exc)

    async def available(self, priority=0, show=aioxmpp.PresenceShow.NONE, status=None):
        p = aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE, show=show)
        # aioxmpp's presence service leaves <priority/> out, so presence is sent by hand.
        p.priority = priority
        if status:
            p.status[None] = status
        await self.client.send(p)

    def message(self, to, body):
        m = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=aioxmpp.JID.fromstr(to))
        m.body[None] = body
        return m

    def bodies(self):
        return [m.body.any() for _, m in self.messages if m.body and m.type_ != aioxmpp.MessageType.ERROR]

    def nonza(self, xso):
        self.client.stream._xmlstream.send_xso(xso)


async def until(what, cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def answers(args):
    """Every answer from the server carries 'from': login (aioxmpp's blocking service asks the
    domain for disco#info), disco, pings to the domain and the account, a request without 'to',
    carbons, the roster, vCards."""
    async with Peer(args, "alice", "strict") as a:
        server = aioxmpp.JID(localpart=None, domain=args.domain, resource=None)
        info = await asyncio.wait_for(a.disco.query_info(server, require_fresh=True), TIMEOUT)
        for f in ["urn:xmpp:ping", "urn:xmpp:carbons:2", "urn:xmpp:mam:2", "urn:xmpp:blocking"]:
            if f not in info.features:
                fail(f"server disco#info lacks {f}: {sorted(info.features)}")
        await asyncio.wait_for(aioxmpp.ping.ping(a.client, server), TIMEOUT)
        await asyncio.wait_for(aioxmpp.ping.ping(a.client, a.jid.bare()), TIMEOUT)
        iq = aioxmpp.IQ(type_=aioxmpp.IQType.GET, payload=aioxmpp.ping.Ping())
        await asyncio.wait_for(a.client.send(iq), TIMEOUT)
        await asyncio.wait_for(a.carbons.enable(), TIMEOUT)
        own = await asyncio.wait_for(a.disco.query_info(a.jid.bare(), require_fresh=True), TIMEOUT)
        if "urn:xmpp:mam:2" not in own.features:
            fail(f"the account's disco#info lacks MAM: {sorted(own.features)}")
        if a.failed:
            fail(f"the stream failed: {a.failed}")
    print("OK answers", flush=True)


async def acks(args):
    """XEP-0198: every message gets acknowledged by the server's answer to the client's own
    <r/>, without the client asking twice: the <a/> waits for the commits it counts."""
    async with Peer(args, "alice", "acks") as a, Peer(args, "bob", "acks") as b:
        await a.available()
        await b.available()
        if not a.stream.sm_enabled:
            fail("stream management was not enabled")
        tokens = [a.client.enqueue(a.message("bob@" + args.domain, f"m{i}")) for i in range(30)]
        acked = lambda: all(t.state == aioxmpp.stream.StanzaState.ACKED for t in tokens)
        await until("every message acknowledged", acked, timeout=5)
        await until("bob got all 30", lambda: len(b.bodies()) == 30)
        if b.bodies() != [f"m{i}" for i in range(30)]:
            fail(f"out of order: {b.bodies()}")
        if a.failed or b.failed:
            fail(f"a stream failed: {a.failed or b.failed}")
    print("OK acks", flush=True)


async def offline(args):
    """Messages that waited for alice arrive after her initial presence, marked with a delay
    from the server; stanzas before <enable/> never make the counts disagree."""
    async with Peer(args, "bob", "offline") as b:
        await b.available()
        for i in range(5):
            await b.client.send(b.message("alice@" + args.domain, f"while away {i}"))
    await asyncio.sleep(0.5)
    a = Peer(args, "alice", "comeback")
    async with a:
        await asyncio.sleep(1.0)
        if a.messages:
            fail(f"messages arrived before initial presence: {a.bodies()}")
        presence_at = time.monotonic()
        await a.available()
        await until("the waiting messages", lambda: len(a.bodies()) >= 5)
        for at, m in a.messages:
            if at < presence_at:
                fail("a message arrived before initial presence")
            delays = list(m.xep0203_delay)
            if not delays or str(delays[0].from_) != args.domain:
                fail(f"offline message without a delay from {args.domain}: {m.body.any()}")
        # Acknowledge everything and keep going: aioxmpp checks the server's counts.
        await a.client.send(a.message("bob@" + args.domain, "back"))
        await asyncio.sleep(1.0)
        if a.failed:
            fail(f"the stream failed: {a.failed}")
    print("OK offline", flush=True)


async def blocking(args):
    """XEP-0191: a block or unblock from one resource is pushed to every resource that fetched
    the block list (aioxmpp updates its list from pushes only)."""
    eve = aioxmpp.JID.fromstr("eve@" + args.domain)
    async with Peer(args, "alice", "one") as one, Peer(args, "alice", "two") as two:
        await one.available()
        await two.available()
        await asyncio.wait_for(one.blocking.block_jids([eve]), TIMEOUT)
        await until("the block pushed to both resources", lambda: eve in one.blocking.blocklist and eve in two.blocking.blocklist)
        await asyncio.wait_for(two.blocking.unblock_jids([eve]), TIMEOUT)
        await until("the unblock pushed to both", lambda: eve not in one.blocking.blocklist and eve not in two.blocking.blocklist)
    print("OK blocking", flush=True)


def shown(peer, jid):
    """The last presence `peer` saw from the full JID `jid`: (type, priority, show)."""
    last = None
    for p in peer.presences:
        if str(p.from_) == jid:
            last = (p.type_, p.priority, p.show)
    return last


async def resources(args):
    """RFC 6121: presence is per resource (bob sees each of alice's devices with its priority),
    alice's own presence is reflected to all her resources, and a message to a full JID goes
    to that resource, the others seeing it as a carbon; to a resource that is not online it
    goes to all of them."""
    d = args.domain
    async with Peer(args, "bob", "desk") as b, Peer(args, "alice", "phone") as phone, Peer(args, "alice", "laptop") as laptop:
        await b.available()
        await asyncio.wait_for(laptop.carbons.enable(), TIMEOUT)
        await phone.available(priority=5)
        await laptop.available(priority=-1, show=aioxmpp.PresenceShow.AWAY)
        avail = aioxmpp.PresenceType.AVAILABLE
        await until("bob sees both of alice's devices", lambda: shown(b, f"alice@{d}/phone") == (avail, 5, aioxmpp.PresenceShow.NONE) and shown(b, f"alice@{d}/laptop") == (avail, -1, aioxmpp.PresenceShow.AWAY))
        await until("the phone sees the laptop's presence", lambda: shown(phone, f"alice@{d}/laptop") is not None)
        await until("the laptop sees its own presence reflected", lambda: shown(laptop, f"alice@{d}/laptop") is not None)
        await b.client.send(b.message(f"alice@{d}/phone", "for the phone"))
        await until("the phone gets it", lambda: "for the phone" in phone.bodies())
        carbon = lambda: any(m.xep0280_received for _, m in laptop.messages)
        await until("the laptop gets a received carbon", carbon)
        if "for the phone" in laptop.bodies():
            fail("the laptop got the phone's message as its own")
        await b.client.send(b.message(f"alice@{d}/tablet", "nobody at the tablet"))
        await until("both get a message for an offline resource", lambda: "nobody at the tablet" in phone.bodies() and "nobody at the tablet" in laptop.bodies())
    await asyncio.sleep(0.5)
    print("OK resources", flush=True)


async def rosterver(args):
    """XEP-0237: the roster comes with a version; asked again with it, the answer is empty and
    the client keeps its copy; pushes carry the new version."""
    async with Peer(args, "alice", "ver1", roster_ver={"items": {}, "ver": ""}) as a:
        await until("a roster version", lambda: a.roster.version)
        first = a.roster.version
        if aioxmpp.JID.fromstr("bob@" + args.domain) not in a.roster.items:
            fail(f"bob is not on alice's roster: {list(a.roster.items)}")
        saved = a.roster.export_as_json()
    async with Peer(args, "alice", "ver2", roster_ver=saved) as a:
        await asyncio.sleep(0.5)
        if a.roster.version != first or aioxmpp.JID.fromstr("bob@" + args.domain) not in a.roster.items:
            fail(f"the unchanged roster was not kept: {a.roster.version} vs {first}")
        await asyncio.wait_for(a.roster.set_entry(aioxmpp.JID.fromstr("eve@" + args.domain), name="Eve"), TIMEOUT)
        await until("a push with a new version", lambda: a.roster.version and a.roster.version != first)
    print("OK rosterver", flush=True)


async def csi(args):
    """XEP-0352: while alice is inactive, bob's presence changes wait (only the latest comes
    when she is active again) and messages still arrive at once."""
    d = args.domain
    async with Peer(args, "bob", "csi") as b, Peer(args, "alice", "csi") as a:
        await a.available()
        await b.available()
        await until("alice sees bob", lambda: shown(a, f"bob@{d}/csi") is not None)
        if not a.client.stream_features.has_feature(CSIFeature):
            fail("no client state indication feature")
        a.nonza(CSIInactive())
        await asyncio.sleep(0.3)
        seen = len(a.presences)
        for show in [aioxmpp.PresenceShow.AWAY, aioxmpp.PresenceShow.XA, aioxmpp.PresenceShow.DND]:
            await b.available(show=show)
            await asyncio.sleep(0.4)
        await b.client.send(b.message(f"alice@{d}", "urgent"))
        await until("the message while inactive", lambda: "urgent" in a.bodies())
        if len(a.presences) != seen:
            fail(f"presence reached an inactive client: {a.presences[seen:]}")
        a.nonza(CSIActive())
        await until("the held presence", lambda: len(a.presences) > seen)
        await asyncio.sleep(0.5)
        if shown(a, f"bob@{d}/csi")[2] != aioxmpp.PresenceShow.DND or len(a.presences) != seen + 1:
            fail(f"expected only bob's latest presence: {a.presences[seen:]}")
    print("OK csi", flush=True)


async def muc(args):
    """aioxmpp's MUC client in a room a native user created: it enters (history, then live),
    says things, and alice and bob see one order, each message with the room's stanza id."""
    import aioxmpp.muc
    import aioxmpp.muc.xso
    room_jid = aioxmpp.JID.fromstr(f"team@conference.{args.domain}")
    peers = [Peer(args, "alice", "muc"), Peer(args, "bob", "muc")]
    async with peers[0] as a, peers[1] as b:
        rooms, history, live = [], [[], []], [[], []]
        for i, p in enumerate((a, b)):
            client = p.client.summon(aioxmpp.MUCClient)
            room, fut = client.join(room_jid, ["Alice", "Bob"][i], history=aioxmpp.muc.xso.History(maxstanzas=10))

            def got(msg, member, source, i=i, **kw):
                if not msg.body:
                    return
                (history if msg.xep0203_delay else live)[i].append(msg.body.any())

            room.on_message.connect(got)
            await asyncio.wait_for(fut, TIMEOUT)
            rooms.append(room)
        if history[0] != ["before-0", "before-1"]:
            fail(f"alice was shown the history {history[0]}")
        # Bob's entering reaches alice as his presence, shortly after his own join completes.
        await until("alice to see bob in the room",
                    lambda: sorted(str(m.nick) for m in rooms[0].members) == ["Alice", "Bob"])
        for n in range(5):
            for i, room in enumerate(rooms):
                msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
                msg.body[None] = f"{['alice', 'bob'][i]}-{n}"
                await room.send_message(msg)
        await until("ten live messages at alice and bob", lambda: len(live[0]) >= 10 and len(live[1]) >= 10)
        if live[0] != live[1]:
            fail(f"alice and bob saw different orders: {live[0]} {live[1]}")
        for who in ("alice", "bob"):
            if [m for m in live[0] if m.startswith(who)] != [f"{who}-{n}" for n in range(5)]:
                fail(f"{who}'s messages came back as {live[0]}")
        await rooms[1].leave()
        await until("alice to see bob leave", lambda: len(list(rooms[0].members)) == 1)
        print("ORDER " + "|".join(live[0]), flush=True)
    print("OK muc", flush=True)


async def muc_admin(args):
    """aioxmpp as a room's owner: its configuration form template round-trips (members-only),
    an affiliation change lets bob in, and a kick takes him out (status 307)."""
    import aioxmpp.muc
    room_jid = aioxmpp.JID.fromstr(f"board@conference.{args.domain}")
    peers = [Peer(args, "alice", "admin"), Peer(args, "bob", "admin")]
    async with peers[0] as a, peers[1] as b:
        ma, mb = a.client.summon(aioxmpp.MUCClient), b.client.summon(aioxmpp.MUCClient)
        room_a, fut = ma.join(room_jid, "Alice")
        await asyncio.wait_for(fut, TIMEOUT)
        form = aioxmpp.muc.ConfigurationForm.from_xso(await ma.get_room_config(room_jid))
        form.membersonly.value = True
        await ma.set_room_config(room_jid, form.render_reply())
        again = aioxmpp.muc.ConfigurationForm.from_xso(await ma.get_room_config(room_jid))
        if again.membersonly.value is not True:
            fail("the room is not members-only after aioxmpp's form")
        await ma.set_affiliation(room_jid, aioxmpp.JID.fromstr(f"bob@{args.domain}"), "member")
        room_b, fut = mb.join(room_jid, "Bob")
        await asyncio.wait_for(fut, TIMEOUT)
        exits = []
        room_b.on_exit.connect(lambda **kw: exits.append(kw))
        await until("alice to see bob in the room", lambda: len(list(room_a.members)) == 2)
        bob = next(m for m in room_a.members if str(m.nick) == "Bob")
        await room_a.kick(bob, reason="out")
        await until("bob to be kicked", lambda: exits)
        if exits[0].get("muc_leave_mode") != aioxmpp.muc.LeaveMode.KICKED:
            fail(f"bob's exit was {exits[0]}, not a kick")
    print("OK muc_admin", flush=True)


async def policy(args):
    """The tenant's policy as aioxmpp sees it: a shared roster group puts eve on alice's roster
    (subscription both, the group's name), and a message across an information barrier comes
    back as a policy-violation error carrying the rule's description."""
    eve = aioxmpp.JID.fromstr("eve@" + args.domain)
    async with Peer(args, "alice", "policy") as a:
        await a.available()
        await until("eve on the roster from the shared group",
                    lambda: eve in a.roster.items and a.roster.items[eve].subscription == "both")
        if "Team" not in a.roster.items[eve].groups:
            fail(f"eve is in roster groups {a.roster.items[eve].groups}, not Team")
        await a.client.send(a.message("bob@" + args.domain, "across the wall"))
        errors = lambda: [m for _, m in a.messages if m.type_ == aioxmpp.MessageType.ERROR]
        await until("the refusal", lambda: errors())
        error = errors()[0].error
        condition = getattr(error.condition, "value", error.condition)
        if "policy-violation" not in str(condition):
            fail(f"refused with {condition}, not policy-violation")
        if error.text != "Alice and Bob are kept apart":
            fail(f"the error's text is {error.text!r}")
    print("OK policy", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    scenarios = {
        "answers": answers,
        "acks": acks,
        "offline": offline,
        "blocking": blocking,
        "resources": resources,
        "rosterver": rosterver,
        "csi": csi,
        "muc": muc,
        "muc_admin": muc_admin,
        "policy": policy,
    }
    asyncio.run(asyncio.wait_for(scenarios[args.scenario](args), 90))


if __name__ == "__main__":
    main()
