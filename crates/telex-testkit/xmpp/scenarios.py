"""XMPP scenarios driven with slixmpp, a client this project did not write.

Usage: python scenarios.py SCENARIO --host H --port P --domain D [--tls-port P2] [...]
Each scenario asserts what it expects and exits non-zero with a message naming what failed.
The users (alice, bob with password "pw") must exist; the test creates them.
"""

import argparse
import asyncio
import logging
import ssl
import sys
import time

import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

TIMEOUT = 20


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, *, mechanism="SCRAM-SHA-256", direct_tls=False):
        super().__init__(jid, password, sasl_mech=mechanism)
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        # The loopback dev certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ["xep_0030", "xep_0199", "xep_0198", "xep_0280", "xep_0313", "xep_0191", "xep_0359", "xep_0054", "xep_0085", "xep_0333", "xep_0184"]:
            self.register_plugin(p)
        self.inbox = []
        self.carbons_sent = []
        self.presences = {}
        self.signals = []
        self.receipts = []
        self.add_event_handler("receipt_received", lambda m: self.receipts.append(m["receipt"]))
        self.session = asyncio.get_event_loop().create_future()
        self.failed_auth = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("session_resumed", self._resumed)
        self.add_event_handler("failed_all_auth", lambda _: self.failed_auth.done() or self.failed_auth.set_result(True))
        self.add_event_handler("message", self._message)
        self.add_event_handler("carbon_sent", self._carbon_sent)
        self.add_event_handler("changed_status", self._presence)
        self.directed = []
        self.raw_presences = []
        self.add_event_handler("presence", lambda p: self.raw_presences.append(str(p)))
        self.add_event_handler("presence_available", lambda p: self.directed.append((str(p["from"]), "available", p["status"])))
        self.add_event_handler("presence_unavailable", lambda p: self.directed.append((str(p["from"]), "unavailable", "")))
        self.add_event_handler("chatstate", lambda m: self.signals.append(("chatstate", str(m["from"]), m["chat_state"])))
        self.add_event_handler("marker_displayed", lambda m: self.signals.append(("displayed", str(m["from"]), m["displayed"]["id"])))

    async def _started(self, _):
        self.send_presence()
        await self.get_roster()
        if not self.session.done():
            self.session.set_result(True)

    def _resumed(self, _):
        if not self.session.done():
            self.session.set_result(True)

    def _message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.inbox.append((str(msg["from"].bare), msg["body"], msg["stanza_id"]["id"]))

    def _carbon_sent(self, msg):
        m = msg["carbon_sent"]
        self.carbons_sent.append((str(m["to"].bare), m["body"]))

    def _presence(self, pres):
        self.presences[str(pres["from"].bare)] = pres["type"]

    async def start(self, host, port):
        self.connect(host, port)
        await asyncio.wait_for(asyncio.shield(self.session), TIMEOUT)


async def until(what, cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def befriend(a, b):
    """a asks to see b's presence; slixmpp's defaults approve and ask back."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    await until(f"{a.boundjid.bare} and {b.boundjid.bare} to see each other online",
                lambda: a.presences.get(b.boundjid.bare) == "available"
                and b.presences.get(a.boundjid.bare) == "available")
    await until("both-way subscriptions in the rosters",
                lambda: a.client_roster[b.boundjid.bare]["subscription"] == "both"
                and b.client_roster[a.boundjid.bare]["subscription"] == "both")


async def chat(args):
    a = Client(f"alice@{args.domain}/laptop", "pw")
    b = Client(f"bob@{args.domain}/phone", "pw", mechanism="SCRAM-SHA-1")
    await a.start(args.host, args.port)
    await b.start(args.host, args.bob_port or args.port)
    await befriend(a, b)

    n = 20
    for i in range(n):
        a.send_message(mto=b.boundjid.bare, mbody=f"a{i}", mtype="chat")
    await until(f"bob to get {n} messages", lambda: len(b.inbox) >= n)
    for i in range(n):
        b.send_message(mto=a.boundjid.bare, mbody=f"b{i}", mtype="chat")
    await until(f"alice to get {n} messages", lambda: len(a.inbox) >= n)
    await asyncio.sleep(0.5)
    if [m[1] for m in b.inbox] != [f"a{i}" for i in range(n)]:
        fail(f"bob got {[m[1] for m in b.inbox]}")
    if [m[1] for m in a.inbox] != [f"b{i}" for i in range(n)]:
        fail(f"alice got {[m[1] for m in a.inbox]}")
    if len({m[2] for m in b.inbox}) != n or not all(m[2] for m in b.inbox):
        fail("messages lack unique XEP-0359 stanza ids")

    # Entity capabilities (XEP-0115) in presence reach contacts.
    from xml.etree import ElementTree as ET
    caps = a.make_presence(pstatus="with caps")
    caps.xml.append(ET.fromstring("<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://telex.test' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>"))
    caps.send()
    await until("bob to see alice's capabilities",
                lambda: any("QgayPKawpkPSDYmwT/WM94uAlu0=" in p and "with caps" in p for p in b.raw_presences))

    # Chat states (XEP-0085) and chat markers (XEP-0333) pass through, not stored.
    typing = a.make_message(mto=b.boundjid.bare, mtype="chat")
    typing["chat_state"] = "composing"
    typing.send()
    await until("bob to see alice typing", lambda: ("chatstate", str(a.boundjid), "composing") in b.signals)
    b["xep_0333"].send_marker(a.boundjid.bare, "a19", "displayed")
    await until("alice to see bob's displayed marker", lambda: ("displayed", str(b.boundjid), "a19") in a.signals)

    # Delivery receipts (XEP-0184): the request is stored with the message, bob's client
    # answers, and the receipt comes back to alice.
    asked = a.make_message(mto=b.boundjid.bare, mbody="please confirm", mtype="chat")
    asked["request_receipt"] = True
    asked.send()
    await until("alice to get bob's receipt", lambda: asked["id"] in a.receipts)

    # Archive paging (XEP-0313 + XEP-0059): everything with bob, 7 at a time, in order.
    bodies = []
    async for m in a["xep_0313"].iterate(with_jid=slixmpp.JID(b.boundjid.bare), total=100, rsm={"max": 7}):
        bodies.append(m["mam_result"]["forwarded"]["stanza"]["body"])
    expected = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)] + ["please confirm"]
    if bodies != expected:
        fail(f"archive pages gave {bodies}")

    # Carbons (XEP-0280) on a second device of alice.
    a2 = Client(f"alice@{args.domain}/tablet", "pw", direct_tls=True)
    await a2.start(args.host, args.tls_port)
    await a2["xep_0280"].enable()
    a.send_message(mto=b.boundjid.bare, mbody="from the laptop", mtype="chat")
    await until("the tablet to get a carbon of the laptop's message", lambda: ("bob@" + args.domain, "from the laptop") in a2.carbons_sent)
    b.send_message(mto=a.boundjid.bare, mbody="to every device", mtype="chat")
    await until("both of alice's devices to get bob's message",
                lambda: any(m[1] == "to every device" for m in a.inbox) and any(m[1] == "to every device" for m in a2.inbox))

    # Ping, disco and the block list answer.
    await a["xep_0199"].ping(jid=slixmpp.JID(args.domain), timeout=5)
    info = await a["xep_0030"].get_info(jid=args.domain)
    for feature in ["urn:xmpp:mam:2", "urn:xmpp:carbons:2", "urn:xmpp:ping"]:
        if feature not in info["disco_info"]["features"]:
            fail(f"disco#info lacks {feature}")
    await a["xep_0191"].block(slixmpp.JID(f"carol@{args.domain}"))
    blocked = await a["xep_0191"].get_blocked()
    if [str(j) for j in blocked["blocklist"]["items"]] != [f"carol@{args.domain}"]:
        fail(f"block list is {blocked['blocklist']['items']}")
    await a["xep_0191"].unblock(slixmpp.JID(f"carol@{args.domain}"))

    # Directed presence (RFC 6121 4.6) to carol, who is not on alice's roster; she learns
    # when alice's device goes away.
    c = Client(f"carol@{args.domain}/desk", "pw")
    await c.start(args.host, args.port)
    a.send_presence(pto=c.boundjid.bare, pstatus="hello carol")
    await until("carol to get alice's directed presence",
                lambda: (str(a.boundjid), "available", "hello carol") in c.directed)
    a2.disconnect()
    a.send_presence(pto=c.boundjid.bare, ptype="unavailable")
    await until("carol to learn alice is unavailable", lambda: (str(a.boundjid), "unavailable", "") in c.directed)

    # vCard storage (XEP-0054): alice publishes hers, bob reads it.
    card = a["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "al & co"
    await a["xep_0054"].publish_vcard(card)
    got = await b["xep_0054"].get_vcard(slixmpp.JID(f"alice@{args.domain}"), cached=False, local=False)
    if got["vcard_temp"]["FN"] != "Alice Liddell" or "<NICKNAME>al &amp; co</NICKNAME>" not in str(got["vcard_temp"]):
        fail(f"bob read alice's vCard as {got['vcard_temp']}")
    for x in (a, b, c):
        x.disconnect()
    print("OK chat", flush=True)


async def resume(args):
    a = Client(f"alice@{args.domain}/laptop", "pw")
    b = Client(f"bob@{args.domain}/phone", "pw")
    await a.start(args.host, args.port)
    await b.start(args.host, args.port)
    await until("stream management with resumption", lambda: a["xep_0198"].sm_id is not None)
    for i in range(5):
        b.send_message(mto=a.boundjid.bare, mbody=f"before{i}", mtype="chat")
    await until("alice to get the first messages", lambda: len(a.inbox) >= 5)
    # The connection drops without a stream end; bob keeps writing meanwhile.
    a.session = asyncio.get_event_loop().create_future()
    a.abort()
    for i in range(10):
        b.send_message(mto=a.boundjid.bare, mbody=f"during{i}", mtype="chat")
    await asyncio.sleep(1)
    resumed = asyncio.get_event_loop().create_future()
    a.add_event_handler("session_resumed", lambda _: resumed.done() or resumed.set_result(True))
    a.connect(args.host, args.port)
    await asyncio.wait_for(resumed, TIMEOUT)
    for i in range(5):
        b.send_message(mto=a.boundjid.bare, mbody=f"after{i}", mtype="chat")
    await until("alice to get every message", lambda: len(a.inbox) >= 20)
    await asyncio.sleep(0.5)
    got = [m[1] for m in a.inbox]
    want = [f"before{i}" for i in range(5)] + [f"during{i}" for i in range(10)] + [f"after{i}" for i in range(5)]
    if got != want:
        fail(f"after resumption alice has {got}")
    a.disconnect()
    b.disconnect()
    print("OK resume", flush=True)


async def redirect(args):
    """alice on --port (a node the test stops after READY), bob on --bob-port: the stopping
    node must send alice to another node (see-other-host), where she logs in again by herself
    and gets bob's next message."""
    a = Client(f"alice@{args.domain}/laptop", "pw")
    b = Client(f"bob@{args.domain}/phone", "pw")
    await a.start(args.host, args.port)
    await b.start(args.host, args.bob_port)
    sent_to = []

    def other_host(e):
        if e["condition"] != "see-other-host":
            return
        sent_to.append(e["see_other_host"])
        # slixmpp follows see-other-host by itself, but its reconnect goes back to an address
        # given to connect() (custom_address) over the one it was sent to: point that there.
        host, _, port = e["see_other_host"].rpartition(":")
        a.custom_address = (host, int(port))

    a.add_event_handler("stream_error", other_host)
    a.session = asyncio.get_event_loop().create_future()
    print("READY", flush=True)
    await until("a see-other-host from the stopping node", lambda: sent_to, 60)
    await asyncio.wait_for(asyncio.shield(a.session), TIMEOUT)
    if a.address[1] == args.port:
        fail(f"alice is back on the stopped node's port: {a.address}")
    b.send_message(mto=a.boundjid.bare, mbody="after the move", mtype="chat")
    await until("alice to get bob's message on the other node", lambda: any(m[1] == "after the move" for m in a.inbox))
    a.disconnect()
    b.disconnect()
    print(f"OK redirect to {sent_to[0]}", flush=True)


async def bad_password(args):
    c = Client(f"alice@{args.domain}/x", "wrong")
    c.connect(args.host, args.port)
    try:
        await asyncio.wait_for(c.failed_auth, TIMEOUT)
    except asyncio.TimeoutError:
        fail("a wrong password was not refused")
    c.abort()
    print("OK bad_password", flush=True)


async def talk(args):
    """Sends `--send` to `--peer` and waits for a message from it containing `--expect`."""
    a = Client(f"{args.user}@{args.domain}/talk", "pw")
    await a.start(args.host, args.port)
    a.send_message(mto=f"{args.peer}@{args.domain}", mbody=args.send, mtype="chat")
    print("SENT", flush=True)
    await until(f"a message from {args.peer}", lambda: any(m[0] == f"{args.peer}@{args.domain}" and args.expect in m[1] for m in a.inbox), 30)
    a.disconnect()
    print("OK talk", flush=True)


async def refused(args):
    """Sends `--send` to `--peer` and prints the error the server answers with."""
    a = Client(f"{args.user}@{args.domain}/talk", "pw")
    errors = []
    # slixmpp's condition list predates RFC 6120's policy-violation: read the element itself.
    def error(m):
        conditions = [c.tag.split("}")[-1] for c in m.xml.iter() if c.tag.endswith("}" + "policy-violation") or c.tag.split("}")[-1] in m["error"].conditions]
        errors.append((conditions[0] if conditions else "?", m["error"]["text"]))
    a.add_event_handler("message_error", error)
    await a.start(args.host, args.port)
    a.send_message(mto=f"{args.peer}@{args.domain}", mbody=args.send, mtype="chat")
    await until(f"an error for the message to {args.peer}", lambda: errors)
    condition, text = errors[0]
    print(f"REFUSED {condition} {text}", flush=True)
    a.disconnect()
    print("OK refused", flush=True)


async def directory(args):
    """--user sees --peer through a shared roster group named --expect (subscription both,
    presence, no request), then searches the directory (XEP-0055) for --send, plainly and with
    a data form, and prints the JIDs found."""
    a = Client(f"{args.user}@{args.domain}/dir", "pw")
    b = Client(f"{args.peer}@{args.domain}/dir", "pw")
    await a.start(args.host, args.port)
    await b.start(args.host, args.port)
    peer = f"{args.peer}@{args.domain}"
    await until("the shared contact on the roster",
                lambda: peer in a.client_roster and a.client_roster[peer]["subscription"] == "both")
    if args.expect not in a.client_roster[peer]["groups"]:
        fail(f"{peer} is in roster groups {a.client_roster[peer]['groups']}, not {args.expect}")
    await until("the shared contact's presence", lambda: a.presences.get(peer) == "available")
    search = "jabber:iq:search"
    fields = await a.make_iq_get(queryxmlns=search, ito=args.domain).send(timeout=TIMEOUT)
    q = fields.xml.find(f"{{{search}}}query")
    if q is None or q.find(f"{{{search}}}nick") is None or q.find("{jabber:x:data}x") is None:
        fail(f"search fields without nick or a form: {fields}")
    query = ET.Element(f"{{{search}}}query")
    ET.SubElement(query, f"{{{search}}}nick").text = args.send
    found = await a.make_iq_set(sub=query, ito=args.domain).send(timeout=TIMEOUT)
    jids = sorted(i.get("jid") for i in found.xml.iter(f"{{{search}}}item"))
    print("FOUND " + ",".join(jids), flush=True)
    query = ET.Element(f"{{{search}}}query")
    form = ET.SubElement(query, "{jabber:x:data}x", type="submit")
    for var, value in [("FORM_TYPE", search), ("nick", args.send)]:
        ET.SubElement(ET.SubElement(form, "{jabber:x:data}field", var=var), "{jabber:x:data}value").text = value
    found = await a.make_iq_set(sub=query, ito=args.domain).send(timeout=TIMEOUT)
    jids = sorted(f.findtext("{jabber:x:data}value") for f in found.xml.iter("{jabber:x:data}field") if f.get("var") == "jid" and f.findtext("{jabber:x:data}value"))
    print("FORM " + ",".join(jids), flush=True)
    a.disconnect()
    b.disconnect()
    print("OK directory", flush=True)


class MucClient(Client):
    """A client that keeps every groupchat message and occupant presence of its rooms."""

    def __init__(self, jid, password, **kw):
        super().__init__(jid, password, **kw)
        self.register_plugin("xep_0045")
        self.live = []
        self.occupants = []
        self.add_event_handler("groupchat_message", self._groupchat)
        self.add_event_handler("groupchat_presence", lambda p: self.occupants.append((p["from"].resource, p["type"])))
        self.errors = []
        self.add_event_handler("groupchat_message_error", lambda m: self.errors.append(m["error"]["condition"]))

    def _groupchat(self, msg):
        if msg["body"] and not msg.get_plugin("delay", check=True):
            self.live.append((msg["from"].resource, msg["body"], msg["stanza_id"]["id"], msg["id"]))


async def muc(args):
    """Two slixmpp users in a room a native user created: history on entering, one order for
    everyone, stanza ids, a nickname clash, disco, MAM on the room, self-ping, leaving."""
    room = f"{args.room}@conference.{args.domain}"
    a = MucClient(f"alice@{args.domain}/laptop", "pw")
    b = MucClient(f"bob@{args.domain}/phone", "pw")
    await a.start(args.host, args.port)
    await b.start(args.host, args.bob_port or args.port)
    muc_a, muc_b = a["xep_0045"], b["xep_0045"]

    items = await a["xep_0030"].get_items(jid=f"conference.{args.domain}")
    jids = [str(i[0]) for i in items["disco_items"]["items"]]
    if room not in jids:
        fail(f"disco#items of the room service lists {jids}, not {room}")
    info = await a["xep_0030"].get_info(jid=room)
    if "http://jabber.org/protocol/muc" not in info["disco_info"]["features"]:
        fail(f"the room's disco#info has no MUC feature: {info['disco_info']['features']}")

    pres, subject, occupants, history = await muc_a.join_muc_wait(room, "Alice", maxstanzas=10, timeout=TIMEOUT)
    if "110" not in [str(c) for c in pres["muc"]["status_codes"]]:
        fail(f"alice's own presence lacks status 110: {pres}")
    shown = [m["body"] for m in history]
    want = [f"before-{i}" for i in range(args.count_before)]
    if shown != want:
        fail(f"alice was shown the history {shown}, expected {want}")
    await muc_b.join_muc_wait(room, "Bob", maxstanzas=0, timeout=TIMEOUT)
    await until("alice to see bob enter", lambda: ("Bob", "available") in a.occupants)
    print("JOINED", flush=True)

    # A nickname another user holds is refused with <conflict/>.
    try:
        await b["xep_0045"].join_muc_wait(room.replace(args.room, args.room), "Alice", timeout=TIMEOUT)
        fail("bob entered under alice's nickname")
    except slixmpp.exceptions.PresenceError as e:
        if e.condition != "conflict":
            fail(f"a nickname clash was answered {e.condition}, not conflict")

    n = args.count
    for i in range(n):
        a.send_message(mto=room, mbody=f"alice-{i}", mtype="groupchat")
        b.send_message(mto=room, mbody=f"bob-{i}", mtype="groupchat")
    total = 2 * n + args.count_native
    await until(f"{total} live messages at alice", lambda: len(a.live) >= total, 40)
    await until(f"{total} live messages at bob", lambda: len(b.live) >= total, 40)
    order_a = [m[1] for m in a.live]
    order_b = [m[1] for m in b.live]
    if order_a != order_b:
        fail(f"alice and bob saw different orders:\n{order_a}\n{order_b}")
    for who, live in (("alice", a.live), ("bob", b.live)):
        for nick, body, sid, _ in live:
            if not sid:
                fail(f"{who} got {body} without a stanza id")
        mine = [m[1] for m in live if m[1].startswith(who)]
        if mine != [f"{who}-{i}" for i in range(n)]:
            fail(f"{who}'s own messages came back as {mine}")
    if a.errors or b.errors:
        fail(f"groupchat errors: {a.errors} {b.errors}")

    # MAM on the room: the whole log in the same order.
    archived = []
    async for m in a["xep_0313"].iterate(jid=slixmpp.JID(room), total=1000, rsm={"max": 7}):
        archived.append(m["mam_result"]["forwarded"]["stanza"]["body"])
    if archived[-len(order_a):] != order_a or archived[:len(want)] != want:
        fail(f"the room's archive reads {archived}")

    # XEP-0410: each is still in the room; a nickname it does not hold is not it.
    await a["xep_0199"].ping(jid=f"{room}/Alice", timeout=TIMEOUT)
    try:
        await a["xep_0199"].ping(jid=f"{room}/Nobody", timeout=TIMEOUT)
        fail("a self-ping under a nickname alice does not hold succeeded")
    except IqError as e:
        if e.condition != "not-acceptable":
            fail(f"self-ping as a stranger answered {e.condition}")

    muc_b.leave_muc(room, "Bob")
    await until("alice to see bob leave", lambda: ("Bob", "unavailable") in a.occupants)
    print("ORDER " + "|".join(order_a), flush=True)
    a.disconnect()
    b.disconnect()
    print("OK muc", flush=True)


async def muc_refusals(args):
    """Each way into a room or a word in it that XEP-0045 refuses, with its condition."""
    d = args.domain
    a = MucClient(f"alice@{d}/laptop", "pw")
    await a.start(args.host, args.port)
    m = a["xep_0045"]

    async def refused(room, condition, **kw):
        try:
            await m.join_muc_wait(f"{room}@conference.{d}", "Alice", timeout=TIMEOUT, **kw)
        except slixmpp.exceptions.PresenceError as e:
            if e.condition != condition:
                fail(f"entering {room} was refused with {e.condition}, not {condition}")
            return
        fail(f"alice entered {room}, which should refuse her with {condition}")

    await refused("secret", "registration-required")
    await refused("banned", "forbidden")
    await refused("locked", "not-authorized")
    await refused("locked", "not-authorized", password="wrong")
    await m.join_muc_wait(f"locked@conference.{d}", "Alice", password="s3", timeout=TIMEOUT)

    # Speaking in a room one has not entered, and as a visitor of a moderated room.
    a.send_message(mto=f"team@conference.{d}", mbody="not in", mtype="groupchat")
    await until("an error for a message to a room alice is not in", lambda: len(a.errors) >= 1)
    if a.errors[0] != "not-acceptable":
        fail(f"a message from a non-occupant was answered {a.errors[0]}")
    await m.join_muc_wait(f"quiet@conference.{d}", "Alice", timeout=TIMEOUT)
    a.send_message(mto=f"quiet@conference.{d}", mbody="visitor", mtype="groupchat")
    await until("an error for a visitor's message", lambda: len(a.errors) >= 2)
    if a.errors[1] != "forbidden":
        fail(f"a visitor's message was answered {a.errors[1]}")
    a.disconnect()
    print("OK muc_refusals", flush=True)


async def muc_admin(args):
    """An owner runs a room from slixmpp: the configuration form (members-only), a mediated
    invitation (delivered as a XEP-0249 direct invitation), the member list, a kick (307),
    a ban (301) and destroying the room (<destroy/>)."""
    d = args.domain
    room = f"staff@conference.{d}"
    a = MucClient(f"alice@{d}/laptop", "pw")
    b = MucClient(f"bob@{d}/phone", "pw")
    b.register_plugin("xep_0249")
    invites = []
    b.add_event_handler("groupchat_direct_invite", lambda m: invites.append((str(m["from"].bare), str(m["groupchat_invite"]["jid"]))))
    removed = {"alice": [], "bob": []}
    for who, c in (("alice", a), ("bob", b)):
        c.add_event_handler("groupchat_presence", lambda p, who=who: p["type"] == "unavailable" and removed[who].append(
            (p["from"].resource, sorted(str(s) for s in p["muc"]["status_codes"]), "destroy" in str(p))))
    await a.start(args.host, args.port)
    await b.start(args.host, args.bob_port or args.port)
    ma, mb = a["xep_0045"], b["xep_0045"]

    pres, _, _, _ = await ma.join_muc_wait(room, "Alice", timeout=TIMEOUT)
    if "201" not in [str(c) for c in pres["muc"]["status_codes"]]:
        fail(f"alice's entering did not create the room (no 201): {pres}")
    form = await ma.get_room_config(room)
    fields = form.get_fields()
    if "muc#roomconfig_membersonly" not in fields:
        fail(f"the configuration form lacks muc#roomconfig_membersonly: {list(fields)}")
    form.set_values({"muc#roomconfig_membersonly": True, "muc#roomconfig_roomname": "Staff"})
    await ma.set_room_config(room, form)
    info = await a["xep_0030"].get_info(jid=room)
    if "muc_membersonly" not in info["disco_info"]["features"]:
        fail(f"the room is not members-only after the form: {info['disco_info']['features']}")
    # A bad value in the form is refused, naming the field.
    bad = await ma.get_room_config(room)
    bad.set_values({"muc#roomconfig_maxusers": "lots"})
    try:
        await ma.set_room_config(room, bad)
        fail("a configuration form with maxusers 'lots' was accepted")
    except IqError as e:
        if e.condition != "bad-request" or "maxusers" not in e.text:
            fail(f"a bad form value was answered {e.condition} {e.text!r}")

    try:
        await mb.join_muc_wait(room, "Bob", timeout=TIMEOUT)
        fail("bob entered a members-only room uninvited")
    except slixmpp.exceptions.PresenceError as e:
        if e.condition != "registration-required":
            fail(f"bob, uninvited, was refused with {e.condition}")
    ma.invite(room, f"bob@{d}", reason="join us")
    await until("bob's invitation", lambda: invites)
    if invites[0] != (f"alice@{d}", room):
        fail(f"bob's invitation reads {invites[0]}")
    members = [str(j) for j in await ma.get_affiliation_list(room, "member")]
    if members != [f"bob@{d}"]:
        fail(f"the member list is {members}")
    owners = [str(j) for j in await ma.get_affiliation_list(room, "owner")]
    if owners != [f"alice@{d}"]:
        fail(f"the owner list is {owners}")
    try:
        await mb.get_affiliation_list(room, "member")
        fail("a plain member read the member list")
    except IqError as e:
        if e.condition != "forbidden":
            fail(f"a member asking for the list was answered {e.condition}")

    await mb.join_muc_wait(room, "Bob", timeout=TIMEOUT)
    await ma.set_role(room, "Bob", "none", reason="out")
    await until("bob to hear he was kicked", lambda: any(r[0] == "Bob" and "307" in r[1] for r in removed["bob"]))
    await until("alice to see bob kicked", lambda: any(r[0] == "Bob" and "307" in r[1] for r in removed["alice"]))
    if not any("110" in r[1] for r in removed["bob"]):
        fail(f"bob's own kick lacked 110: {removed['bob']}")
    try:
        await mb.set_role(room, "Alice", "none")
        fail("bob, out of the room, kicked alice")
    except IqError as e:
        if e.condition != "forbidden":
            fail(f"a kick by a non-moderator was answered {e.condition}")

    await mb.join_muc_wait(room, "Bob", timeout=TIMEOUT)
    await ma.set_affiliation(room, "outcast", jid=f"bob@{d}")
    await until("bob to hear he was banned", lambda: any(r[0] == "Bob" and "301" in r[1] for r in removed["bob"]))
    try:
        await mb.join_muc_wait(room, "Bob", timeout=TIMEOUT)
        fail("a banned bob entered")
    except slixmpp.exceptions.PresenceError as e:
        if e.condition != "forbidden":
            fail(f"a banned bob was refused with {e.condition}")

    await ma.destroy(room, reason="done")
    await until("alice to hear the room was destroyed", lambda: any(r[0] == "Alice" and r[2] for r in removed["alice"]))
    try:
        await a["xep_0030"].get_info(jid=room)
        fail("a destroyed room still answers disco#info")
    except IqError as e:
        if e.condition != "item-not-found":
            fail(f"disco#info of a destroyed room answered {e.condition}")
    a.disconnect()
    b.disconnect()
    print("OK muc_admin", flush=True)


async def muc_voice(args):
    """Private messages between occupants (XEP-0045 §7.5), turned off per room; voice in a
    moderated room (§8.3-8.5): a visitor may not speak until a moderator grants it voice, the
    voice list, revoking it; a visitor cannot grant itself voice."""
    d = args.domain
    room = f"forum@conference.{d}"
    a = MucClient(f"alice@{d}/laptop", "pw")
    b = MucClient(f"bob@{d}/phone", "pw")
    pms = {"alice": [], "bob": []}
    errors = {"alice": [], "bob": []}
    for who, c in (("alice", a), ("bob", b)):
        c.add_event_handler("message", lambda m, who=who: m["type"] == "chat" and str(m["from"].bare) == room and pms[who].append(
            (m["from"].resource, m["body"], "http://jabber.org/protocol/muc#user" in str(m))))
        c.add_event_handler("message_error", lambda m, who=who: errors[who].append(m["error"]["condition"]))
        c.add_event_handler("groupchat_message_error", lambda m, who=who: errors[who].append(m["error"]["condition"]))
    roles = []
    b.add_event_handler("groupchat_presence", lambda p: roles.append((p["from"].resource, p["muc"]["role"])))
    await a.start(args.host, args.port)
    await b.start(args.host, args.bob_port or args.port)
    ma, mb = a["xep_0045"], b["xep_0045"]
    await ma.join_muc_wait(room, "Alice", timeout=TIMEOUT)
    await mb.join_muc_wait(room, "Bob", timeout=TIMEOUT)

    b.send_message(mto=f"{room}/Alice", mbody="psst", mtype="chat")
    await until("alice's private message", lambda: pms["alice"])
    if pms["alice"][0] != ("Bob", "psst", True):
        fail(f"alice got the private message as {pms['alice'][0]} (from the occupant JID, with muc#user)")
    if any(m[0] == f"bob@{d}" for m in a.inbox):
        fail("the private message revealed bob's own address")
    a.send_message(mto=f"{room}/Nobody", mbody="anyone?", mtype="chat")
    await until("an error for a message to a nickname nobody holds", lambda: errors["alice"])
    if errors["alice"][0] != "item-not-found":
        fail(f"a private message to nobody was answered {errors['alice'][0]}")

    form = await ma.get_room_config(room)
    form.set_values({"muc#roomconfig_moderatedroom": True})
    await ma.set_room_config(room, form)
    await until("bob to become a visitor", lambda: ("Bob", "visitor") in roles)
    b.send_message(mto=room, mbody="may I?", mtype="groupchat")
    await until("an error for a visitor's message", lambda: "forbidden" in errors["bob"])
    try:
        await mb.set_role(room, "Bob", "participant")
        fail("a visitor gave itself voice")
    except IqError as e:
        if e.condition != "forbidden":
            fail(f"a visitor granting itself voice was answered {e.condition}")
    seen = len(roles)
    await ma.set_role(room, "Bob", "participant")
    await until("bob to hear he has voice", lambda: ("Bob", "participant") in roles[seen:])
    voices = await ma.get_roles_list(room, "participant")
    if voices != ["Bob"]:
        fail(f"the voice list reads {voices}")
    b.send_message(mto=room, mbody="thanks", mtype="groupchat")
    await until("alice to hear bob speak", lambda: any(m[1] == "thanks" for m in a.live))
    seen = len(roles)
    await ma.set_role(room, "Bob", "visitor")
    await until("bob to lose his voice", lambda: ("Bob", "visitor") in roles[seen:])
    refused = errors["bob"].count("forbidden")
    b.send_message(mto=room, mbody="again", mtype="groupchat")
    await until("a second refusal", lambda: errors["bob"].count("forbidden") > refused)

    form = await ma.get_room_config(room)
    form.set_values({"muc#roomconfig_allowpm": "none"})
    await ma.set_room_config(room, form)
    b.send_message(mto=f"{room}/Alice", mbody="psst again", mtype="chat")
    await until("a refusal of a private message", lambda: "not-allowed" in errors["bob"])
    await asyncio.sleep(0.5)
    if len(pms["alice"]) != 1:
        fail(f"alice got private messages in a room that turned them off: {pms['alice']}")
    a.disconnect()
    b.disconnect()
    print("OK muc_voice", flush=True)


class Ws:
    """XMPP over WebSocket (RFC 7395): aiohttp's WebSocket and slixmpp's SASL; slixmpp itself
    has no WebSocket transport, so the framing exchange is scripted here."""

    def __init__(self, ws):
        self.ws = ws
        self.got = []

    async def send(self, xml):
        await self.ws.send_str(xml)

    async def expect(self, needle):
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, m in enumerate(self.got):
                if needle in m:
                    del self.got[: i + 1]
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"WebSocket: never got {needle!r}; got {self.got}")
            msg = await self.ws.receive(timeout=left)
            if msg.type != 1:  # aiohttp.WSMsgType.TEXT
                fail(f"WebSocket: {msg.type} while waiting for {needle!r}")
            self.got.append(msg.data)


async def websocket(args):
    import base64
    import aiohttp
    from slixmpp.util.sasl import choose

    b = Client(f"bob@{args.domain}/phone", "pw")
    await b.start(args.host, args.port)
    framing = "urn:ietf:params:xml:ns:xmpp-framing"
    async with aiohttp.ClientSession() as http:
        raw = await http.ws_connect(f"ws://{args.host}:{args.http_port}/xmpp-websocket", protocols=["xmpp"])
        if raw.protocol != "xmpp":
            fail(f"the server chose WebSocket subprotocol {raw.protocol!r}")
        ws = Ws(raw)
        await ws.send(f"<open xmlns='{framing}' to='{args.domain}' version='1.0'/>")
        await ws.expect("<open")
        features = await ws.expect("mechanisms")
        if "SCRAM-SHA-256" not in features:
            fail(f"features: {features}")
        mech = choose(["SCRAM-SHA-256"], lambda req, opt: {"username": b"alice", "password": b"pw"},
                      lambda sec: {k: k == "unencrypted_scram" for k in sec})
        first = base64.b64encode(mech.process()).decode()
        await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>")
        challenge = (await ws.expect("<challenge")).split(">")[1].split("<")[0]
        final = base64.b64encode(mech.process(base64.b64decode(challenge))).decode()
        await ws.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")
        success = (await ws.expect("<success")).split(">")[1].split("<")[0]
        mech.process(base64.b64decode(success))  # checks the server's signature
        await ws.send(f"<open xmlns='{framing}' to='{args.domain}' version='1.0'/>")
        await ws.expect("urn:ietf:params:xml:ns:xmpp-bind")
        await ws.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
        await ws.expect(f"alice@{args.domain}/web")
        await ws.send("<presence xmlns='jabber:client'/>")
        await ws.send(f"<message xmlns='jabber:client' to='bob@{args.domain}' id='w1' type='chat'><body>over websocket</body></message>")
        await until("bob to get the WebSocket message", lambda: any(m[1] == "over websocket" for m in b.inbox))
        b.send_message(mto=f"alice@{args.domain}", mbody="back to the browser", mtype="chat")
        await ws.expect("back to the browser")
        await ws.send(f"<close xmlns='{framing}'/>")
        await ws.expect("<close")
    b.disconnect()
    print("OK websocket", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--tls-port", type=int, default=5223)
    p.add_argument("--http-port", type=int, default=7480)
    p.add_argument("--bob-port", type=int, default=0)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--user", default="alice")
    p.add_argument("--peer", default="bob")
    p.add_argument("--send", default="hello")
    p.add_argument("--expect", default="")
    p.add_argument("--room", default="team")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--count-before", type=int, default=0)
    p.add_argument("--count-native", type=int, default=0)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    scenarios = {"chat": chat, "resume": resume, "redirect": redirect, "bad_password": bad_password, "talk": talk, "refused": refused, "websocket": websocket, "muc": muc, "muc_refusals": muc_refusals, "muc_admin": muc_admin, "muc_voice": muc_voice, "directory": directory}
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(scenarios[args.scenario](args), 120))


if __name__ == "__main__":
    main()
