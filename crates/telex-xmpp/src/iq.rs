//! What an `<iq/>` from the client asks for, and how the answers look. Pure: the connection
//! carries out the request and builds the reply with these helpers.

use crate::ns;
use crate::xml::{el, text_el, Element, Node};

/// A request the gateway understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Bind {
        resource: String,
    },
    /// RFC 3921 session establishment: a no-op kept for old clients.
    Session,
    /// With the version the client has (XEP-0237), if it sent one.
    RosterGet {
        ver: Option<String>,
    },
    RosterSet {
        jid: String,
        name: String,
        groups: Vec<String>,
    },
    RosterRemove {
        jid: String,
    },
    DiscoInfo,
    DiscoItems,
    Ping,
    Carbons {
        enable: bool,
    },
    Mam(MamQuery),
    BlockList,
    Block {
        jids: Vec<String>,
    },
    /// Empty: unblock everyone.
    Unblock {
        jids: Vec<String>,
    },
    /// vCard get (of the user, or of the JID in `to`).
    VCardGet,
    /// The `<vCard/>` to store.
    VCardSet(Element),
    /// XEP-0055: which fields a directory search takes.
    SearchFields,
    /// XEP-0055: a directory search.
    Search(SearchQuery),
    /// A malformed request of a known kind.
    Bad(String),
    /// Anything else (answered `service-unavailable`).
    Unsupported,
}

/// A XEP-0055 search: each given field must be contained (case ignored) in the entry's;
/// `form` when it came as a data form (XEP-0004), which the answer then is too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchQuery {
    pub first: String,
    pub last: String,
    pub nick: String,
    pub email: String,
    pub form: bool,
}

impl SearchQuery {
    /// The longest value given, for the directory's own search to narrow on.
    pub fn key(&self) -> &str {
        [&self.first, &self.last, &self.nick, &self.email].into_iter().max_by_key(|v| v.len()).map_or("", |v| v)
    }

    /// Whether an entry with this display name and email matches every field given.
    pub fn matches(&self, name: &str, email: &str) -> bool {
        let has = |hay: &str, needle: &str| needle.is_empty() || hay.to_lowercase().contains(&needle.to_lowercase());
        has(name, &self.first) && has(name, &self.last) && has(name, &self.nick) && has(email, &self.email)
    }
}

/// A XEP-0313 query with XEP-0059 paging.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MamQuery {
    pub queryid: String,
    pub with: Option<String>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub after_id: Option<String>,
    /// `Some(None)`: `<before/>` empty, the last page.
    pub before_id: Option<Option<String>>,
    pub max: Option<usize>,
}

/// Parses the payload of an `iq` of `kind` ("get" or "set").
pub fn request(kind: &str, payload: Option<&Element>) -> Request {
    let Some(p) = payload else { return Request::Bad("an iq request needs one child element".into()) };
    let xmlns = p.attr("xmlns").unwrap_or_default();
    match (kind, p.name.as_str(), xmlns) {
        ("set", "bind", ns::BIND) => {
            Request::Bind { resource: p.child("resource").map(|r| r.text().trim().to_string()).unwrap_or_default() }
        }
        ("set", "session", ns::SESSION) => Request::Session,
        ("get", "query", ns::ROSTER) => Request::RosterGet { ver: p.attr("ver").map(str::to_string) },
        ("set", "query", ns::ROSTER) => roster_set(p),
        ("get", "query", ns::DISCO_INFO) => Request::DiscoInfo,
        ("get", "query", ns::DISCO_ITEMS) => Request::DiscoItems,
        ("get", "ping", ns::PING) => Request::Ping,
        ("set", "enable", ns::CARBONS) => Request::Carbons { enable: true },
        ("set", "disable", ns::CARBONS) => Request::Carbons { enable: false },
        ("set", "query", ns::MAM) => mam(p),
        ("get", "blocklist", ns::BLOCKING) => Request::BlockList,
        ("set", "block", ns::BLOCKING) => match item_jids(p) {
            jids if jids.is_empty() => Request::Bad("<block/> needs at least one <item jid='...'/>".into()),
            jids => Request::Block { jids },
        },
        ("set", "unblock", ns::BLOCKING) => Request::Unblock { jids: item_jids(p) },
        ("get", "vCard", ns::VCARD) => Request::VCardGet,
        ("set", "vCard", ns::VCARD) => Request::VCardSet(p.clone()),
        ("get", "query", ns::SEARCH) => Request::SearchFields,
        ("set", "query", ns::SEARCH) => search(p),
        _ => Request::Unsupported,
    }
}

const SEARCH_FIELDS: [(&str, &str); 4] =
    [("first", "Given name"), ("last", "Family name"), ("nick", "Name"), ("email", "Email")];
/// Longest value of one search field.
const MAX_SEARCH_FIELD: usize = 256;

fn search(q: &Element) -> Request {
    let mut query = SearchQuery::default();
    let mut set = |name: &str, value: String| -> Result<(), String> {
        if value.len() > MAX_SEARCH_FIELD {
            return Err(format!("the {name} field is longer than {MAX_SEARCH_FIELD} bytes"));
        }
        match name {
            "first" => query.first = value,
            "last" => query.last = value,
            "nick" => query.nick = value,
            "email" => query.email = value,
            _ => {}
        }
        Ok(())
    };
    let result = match q.elements().find(|e| e.name == "x" && e.attr("xmlns") == Some(ns::DATA)) {
        Some(form) => form
            .elements()
            .filter(|f| f.name == "field")
            .filter_map(|f| Some((f.attr("var")?.to_string(), f.child("value").map(|v| v.text()).unwrap_or_default())))
            .try_for_each(|(var, value)| set(&var, value.trim().to_string())),
        None => q.elements().try_for_each(|e| set(&e.name, e.text().trim().to_string())),
    };
    if let Err(text) = result {
        return Request::Bad(text);
    }
    let form = q.elements().any(|e| e.name == "x" && e.attr("xmlns") == Some(ns::DATA));
    let query = SearchQuery { form, ..query };
    if query.key().is_empty() {
        return Request::Bad("a search needs at least one of first, last, nick or email".into());
    }
    Request::Search(query)
}

fn field(var: &str, label: &str, kind: &str, value: Option<&str>) -> Node {
    let mut attrs = vec![("var", var), ("type", kind)];
    if !label.is_empty() {
        attrs.push(("label", label));
    }
    let children = value.map(|v| vec![text_el("value", v)]).unwrap_or_default();
    Node::Element(el("field", &attrs, children))
}

/// XEP-0055 §2: the fields a search takes, both as plain elements and as a data form.
pub fn search_fields() -> Element {
    let mut children = vec![text_el("instructions", "Search your company's directory by name or email.")];
    children.extend(SEARCH_FIELDS.iter().map(|(f, _)| Node::Element(el(f, &[], vec![]))));
    let mut form = vec![
        text_el("title", "Directory search"),
        text_el("instructions", "Search your company's directory by name or email."),
        field("FORM_TYPE", "", "hidden", Some(ns::SEARCH)),
    ];
    form.extend(SEARCH_FIELDS.iter().map(|(f, label)| field(f, label, "text-single", None)));
    children.push(Node::Element(el("x", &[("xmlns", ns::DATA), ("type", "form")], form)));
    el("query", &[("xmlns", ns::SEARCH)], children)
}

/// One person found: JID, display name (split into first and last at the first space) and
/// email.
pub struct Found<'a> {
    pub jid: &'a str,
    pub name: &'a str,
    pub email: &'a str,
}

/// XEP-0055 §2/§3: the results, as `<item/>`s or, for a data-form search, as a result form.
pub fn search_results(found: &[Found<'_>], form: bool) -> Element {
    let split = |name: &str| -> (String, String) {
        match name.trim().split_once(' ') {
            Some((f, l)) => (f.to_string(), l.trim().to_string()),
            None => (name.trim().to_string(), String::new()),
        }
    };
    if !form {
        let items = found.iter().map(|f| {
            let (first, last) = split(f.name);
            let fields = [("first", first.as_str()), ("last", last.as_str()), ("nick", f.name), ("email", f.email)];
            Node::Element(el("item", &[("jid", f.jid)], fields.iter().map(|(n, v)| text_el(n, v)).collect()))
        });
        return el("query", &[("xmlns", ns::SEARCH)], items.collect());
    }
    let mut reported = vec![field("jid", "JID", "jid-single", None)];
    reported.extend(SEARCH_FIELDS.iter().map(|(f, label)| field(f, label, "text-single", None)));
    let mut children =
        vec![field("FORM_TYPE", "", "hidden", Some(ns::SEARCH)), Node::Element(el("reported", &[], reported))];
    for f in found {
        let (first, last) = split(f.name);
        let values =
            [("jid", f.jid), ("first", first.as_str()), ("last", last.as_str()), ("nick", f.name), ("email", f.email)];
        let fields =
            values.iter().map(|(var, v)| Node::Element(el("field", &[("var", var)], vec![text_el("value", v)])));
        children.push(Node::Element(el("item", &[], fields.collect())));
    }
    el(
        "query",
        &[("xmlns", ns::SEARCH)],
        vec![Node::Element(el("x", &[("xmlns", ns::DATA), ("type", "result")], children))],
    )
}

fn item_jids(p: &Element) -> Vec<String> {
    p.elements().filter(|e| e.name == "item").filter_map(|e| e.attr("jid")).map(str::to_string).collect()
}

fn roster_set(q: &Element) -> Request {
    let items: Vec<&Element> = q.elements().filter(|e| e.name == "item").collect();
    let [item] = items.as_slice() else {
        return Request::Bad("a roster set carries exactly one <item/>".into());
    };
    let Some(jid) = item.attr("jid") else { return Request::Bad("the roster item has no 'jid'".into()) };
    if item.attr("subscription") == Some("remove") {
        return Request::RosterRemove { jid: jid.to_string() };
    }
    let groups = item.elements().filter(|g| g.name == "group").map(|g| g.text()).collect();
    Request::RosterSet { jid: jid.to_string(), name: item.attr("name").unwrap_or_default().to_string(), groups }
}

fn mam(q: &Element) -> Request {
    let mut query = MamQuery { queryid: q.attr("queryid").unwrap_or_default().to_string(), ..Default::default() };
    if let Some(form) = q.child("x") {
        for field in form.elements().filter(|f| f.name == "field") {
            let value = field.child("value").map(|v| v.text().trim().to_string()).unwrap_or_default();
            let time = |v: &str| parse_time(v).ok_or_else(|| format!("'{v}' is not an XEP-0082 date-time"));
            match field.attr("var") {
                Some("with") => query.with = Some(value),
                Some("start") => match time(&value) {
                    Ok(t) => query.start_ms = Some(t),
                    Err(e) => return Request::Bad(e),
                },
                Some("end") => match time(&value) {
                    Ok(t) => query.end_ms = Some(t),
                    Err(e) => return Request::Bad(e),
                },
                Some("FORM_TYPE") | None => {}
                Some(other) => return Request::Bad(format!("unknown MAM filter '{other}'")),
            }
        }
    }
    if let Some(set) = q.child("set") {
        if let Some(max) = set.child("max") {
            match max.text().trim().parse() {
                Ok(m) => query.max = Some(m),
                Err(_) => return Request::Bad("<max/> is not a number".into()),
            }
        }
        query.after_id = set.child("after").map(|a| a.text().trim().to_string()).filter(|a| !a.is_empty());
        query.before_id = set.child("before").map(|b| Some(b.text().trim().to_string()).filter(|b| !b.is_empty()));
    }
    Request::Mam(query)
}

/// An XEP-0082 date-time (UTC `Z` or a numeric offset `±hh:mm`) in Unix milliseconds; `None`
/// for anything else. Never slices inside a character: the input is the client's.
pub fn parse_time(s: &str) -> Option<u64> {
    let (base, offset_ms) = match s.strip_suffix('Z') {
        Some(b) => (b, 0i64),
        None => {
            let (base, offset) = s.split_at_checked(s.len().checked_sub(6)?)?;
            let (sign, hm) = match offset.split_at_checked(1)? {
                ("+", hm) => (1, hm),
                ("-", hm) => (-1, hm),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) || hm.len() != 5 {
                return None;
            }
            (base, sign * (h * 60 + m) * 60_000)
        }
    };
    let t = humantime::parse_rfc3339_weak(base).ok()?;
    let ms = i64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()? - offset_ms;
    u64::try_from(ms).ok()
}

/// The last instant XEP-0082 (four-digit years) can write.
const LAST_STAMP_MS: u64 = 253_402_300_799_999;

/// Unix milliseconds as an XEP-0082 date-time (clamped to year 9999).
pub fn format_time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(LAST_STAMP_MS));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `<iq type='result'/>` answering `id`, from whom the request was to, with an optional payload.
pub fn result(id: &str, from: &str, to: &str, payload: Option<Element>) -> Element {
    el(
        "iq",
        &[("type", "result"), ("id", id), ("from", from), ("to", to)],
        payload.map(Node::Element).into_iter().collect(),
    )
}

/// The features this server offers, for disco#info on the server and on accounts.
pub const SERVER_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::CARBONS,
    ns::BLOCKING,
    ns::STANZA_ID,
    ns::OFFLINE,
    ns::MAM,
    ns::VCARD,
    ns::SEARCH,
    ns::ROSTER,
    ns::SM,
    ns::DELAY,
];

/// disco#info: the server's identity and features (for a bare JID, the account's: MAM and
/// disco#info only).
pub fn disco_info(for_account: bool) -> Element {
    let identity = if for_account {
        el("identity", &[("category", "account"), ("type", "registered")], vec![])
    } else {
        el("identity", &[("category", "server"), ("type", "im"), ("name", "Telex")], vec![])
    };
    let mut children = vec![Node::Element(identity)];
    let features: &[&str] = if for_account { &[ns::MAM, ns::DISCO_INFO] } else { SERVER_FEATURES };
    children.extend(features.iter().map(|f| Node::Element(el("feature", &[("var", f)], vec![]))));
    el("query", &[("xmlns", ns::DISCO_INFO)], children)
}

/// `<query xmlns='...disco#items'/>` listing these services (the server's: its room service;
/// an account's: none).
pub fn disco_items(services: &[String]) -> Element {
    let items = services.iter().map(|s| Node::Element(el("item", &[("jid", s)], vec![]))).collect();
    el("query", &[("xmlns", ns::DISCO_ITEMS)], items)
}

/// The XEP-0191 block list.
pub fn blocklist(jids: &[String]) -> Element {
    let items = jids.iter().map(|j| Node::Element(el("item", &[("jid", j)], vec![]))).collect();
    el("blocklist", &[("xmlns", ns::BLOCKING)], items)
}

/// One archived message as a XEP-0313 result.
pub struct Archived<'a> {
    pub server_id: &'a str,
    pub from: String,
    pub to: &'a str,
    pub client_id: &'a str,
    pub body: &'a str,
    pub extras: &'a str,
    pub sent_at_ms: u64,
}

/// One result of a MAM query, from the archive (`archive`, the user's bare JID) to the client.
pub fn mam_result(me: &str, archive: &str, queryid: &str, m: &Archived<'_>) -> Element {
    let inner = el(
        "message",
        &[("xmlns", ns::CLIENT), ("from", &m.from), ("to", m.to), ("id", m.client_id), ("type", "chat")],
        std::iter::once(text_el("body", m.body)).chain(crate::xml::extras(m.extras)).collect(),
    );
    let delay = el("delay", &[("xmlns", ns::DELAY), ("stamp", &format_time(m.sent_at_ms))], vec![]);
    let forwarded = el("forwarded", &[("xmlns", ns::FORWARD)], vec![Node::Element(delay), Node::Element(inner)]);
    let result =
        el("result", &[("xmlns", ns::MAM), ("queryid", queryid), ("id", m.server_id)], vec![Node::Element(forwarded)]);
    el("message", &[("from", archive), ("to", me)], vec![Node::Element(result)])
}

/// The `<fin/>` closing a MAM query.
pub fn mam_fin(first: Option<&str>, last: Option<&str>, complete: bool) -> Element {
    let mut set = Vec::new();
    if let Some(f) = first {
        set.push(text_el("first", f));
    }
    if let Some(l) = last {
        set.push(text_el("last", l));
    }
    let set = el("set", &[("xmlns", ns::RSM)], set);
    let complete = if complete { "true" } else { "" };
    el("fin", &[("xmlns", ns::MAM), ("complete", complete)], vec![Node::Element(set)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Event, Limits, StreamParser};

    fn parse(xml: &str) -> Element {
        let mut p = StreamParser::new(Limits::default());
        p.feed(format!("<stream:stream xmlns='jabber:client' xmlns:stream='{}'>{xml}", ns::STREAM).as_bytes());
        p.next_event().unwrap();
        match p.next_event().unwrap() {
            Some(Event::Stanza(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    fn req(xml: &str) -> Request {
        let iq = parse(xml);
        let payload = iq.elements().next();
        request(iq.attr("type").unwrap(), payload)
    }

    #[test]
    fn roster_requests() {
        assert_eq!(
            req("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"),
            Request::RosterGet { ver: None }
        );
        assert_eq!(
            req("<iq type='get' id='1'><query xmlns='jabber:iq:roster' ver='v1'/></iq>"),
            Request::RosterGet { ver: Some("v1".into()) }
        );
        assert_eq!(
            req("<iq type='set' id='1'><query xmlns='jabber:iq:roster'><item jid='b@x' name='B'><group>W</group></item></query></iq>"),
            Request::RosterSet { jid: "b@x".into(), name: "B".into(), groups: vec!["W".into()] }
        );
        assert_eq!(
            req("<iq type='set' id='1'><query xmlns='jabber:iq:roster'><item jid='b@x' subscription='remove'/></query></iq>"),
            Request::RosterRemove { jid: "b@x".into() }
        );
        assert!(matches!(req("<iq type='set' id='1'><query xmlns='jabber:iq:roster'/></iq>"), Request::Bad(_)));
    }

    #[test]
    fn mam_query_with_form_and_paging() {
        let q = req(&format!(
            "<iq type='set' id='q'><query xmlns='{}' queryid='f27'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{}</value></field>\
             <field var='with'><value>b@x</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field></x>\
             <set xmlns='{}'><max>10</max><before/></set></query></iq>",
            ns::MAM,
            ns::MAM,
            ns::RSM
        ));
        assert_eq!(
            q,
            Request::Mam(MamQuery {
                queryid: "f27".into(),
                with: Some("b@x".into()),
                start_ms: Some(1_275_868_800_000),
                max: Some(10),
                before_id: Some(None),
                ..Default::default()
            })
        );
        let bad = req(&format!(
            "<iq type='set' id='q'><query xmlns='{}'><x xmlns='jabber:x:data'><field var='start'><value>yesterday</value></field></x></query></iq>",
            ns::MAM
        ));
        assert!(matches!(bad, Request::Bad(m) if m.contains("yesterday")));
    }

    #[test]
    fn times_round_trip_and_take_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(format_time(1250), "1970-01-01T00:00:01.250Z");
        assert_eq!(parse_time("garbage"), None);
        // Client input: never a panic, whatever the bytes.
        for bad in ["€€a", "€€€€€€", "2010-06-07T00:00:00+€€", "x+01:0€", "", "+00:00", "2010-06-07T00:00:00+25:00"]
        {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        assert_eq!(format_time(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn other_requests() {
        assert_eq!(req("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"), Request::Ping);
        assert_eq!(
            req("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>"),
            Request::Bind { resource: "phone".into() }
        );
        assert_eq!(
            req("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='c@x'/></block></iq>"),
            Request::Block { jids: vec!["c@x".into()] }
        );
        assert_eq!(
            req("<iq type='set' id='b'><unblock xmlns='urn:xmpp:blocking'/></iq>"),
            Request::Unblock { jids: vec![] }
        );
        assert_eq!(req("<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>"), Request::Unsupported);
        assert!(matches!(req("<iq type='get' id='v'/>"), Request::Bad(_)));
    }

    #[test]
    fn directory_searches_plain_and_with_a_form() {
        assert_eq!(req("<iq type='get' id='s'><query xmlns='jabber:iq:search'/></iq>"), Request::SearchFields);
        let plain = req(
            "<iq type='set' id='s'><query xmlns='jabber:iq:search'><nick>Ann</nick><email>acme</email></query></iq>",
        );
        let Request::Search(q) = plain else { panic!("{plain:?}") };
        assert_eq!((q.nick.as_str(), q.email.as_str(), q.form, q.key()), ("Ann", "acme", false, "acme"));
        assert!(q.matches("Ann Smith ann@x", "ann@acme.example"));
        assert!(!q.matches("Ann Smith ann@x", "ann@other.example"), "every field given must match");
        let form = req("<iq type='set' id='s'><query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>jabber:iq:search</value></field>\
             <field var='last'><value>Smith</value></field></x></query></iq>");
        let Request::Search(q) = form else { panic!("{form:?}") };
        assert!(q.form && q.last == "Smith");
        let empty = req("<iq type='set' id='s'><query xmlns='jabber:iq:search'/></iq>");
        assert!(matches!(empty, Request::Bad(ref t) if t.contains("at least one")), "{empty:?}");
        let long = format!(
            "<iq type='set' id='s'><query xmlns='jabber:iq:search'><nick>{}</nick></query></iq>",
            "a".repeat(300)
        );
        assert!(matches!(req(&long), Request::Bad(ref t) if t.contains("longer than")));
        let found = [Found { jid: "ann@x", name: "Ann Smith", email: "ann@x" }];
        let xml = crate::xml::xml_of(&search_results(&found, false));
        assert!(xml.contains("<first>Ann</first>") && xml.contains("<last>Smith</last>"), "{xml}");
    }
}
