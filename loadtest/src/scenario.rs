//! Scenarios: what load to offer, as TOML or a built-in preset. Pure, so every rule is tested;
//! a bad file gets an error naming the field.

use serde::{Deserialize, Serialize};

/// How the tool talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// XMPP c2s over plain TCP (SASL PLAIN): any XMPP server configured for it.
    Xmpp,
    /// Telex's native gRPC client API (`--server` is then the client API address).
    Grpc,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub driver: Driver,
    /// XMPP domain the users live in.
    pub domain: String,
    pub users: usize,
    /// Connections (resources) per user.
    pub devices: usize,
    /// Each user writes to this many others (its neighbours in a ring).
    pub contacts: usize,
    /// New connections per second while logging in.
    pub login_rate: f64,
    /// Messages per second over all users, offered on schedule (open loop).
    pub message_rate: f64,
    /// Body size in bytes (at least the timestamp it carries).
    pub message_bytes: usize,
    /// Presence changes per second over all users; each user first subscribes to its
    /// contacts' presence, so every change reaches `contacts` subscribers.
    pub presence_rate: f64,
    /// Connections dropped and logged in again per second over all users.
    pub reconnect_rate: f64,
    /// Share of recipients kept offline (their messages are stored, not delivered live).
    pub offline_fraction: f64,
    /// Seconds over which the message rate climbs to `message_rate`.
    pub ramp_up_secs: u64,
    /// Seconds at full rate before measuring.
    pub warm_up_secs: u64,
    /// Seconds measured at full rate.
    pub duration_secs: u64,
    /// Group chat: every user is an occupant of one of this many rooms (user `u` of
    /// `lt-room<u % rooms>@conference.<domain>`, XEP-0045) and says its messages there, so each
    /// reaches the room's other occupants; 0: one-to-one chat with the contacts.
    pub rooms: usize,
    /// Password of every provisioned user.
    pub password: String,
    /// For servers other than Telex: a shell command that creates the users `lt0 ..
    /// lt<LT_USERS-1>` in `LT_DOMAIN` with `LT_PASSWORD`, run once before logging in (empty:
    /// provision through Telex's admin API, or not at all with `--admin none`).
    pub provision_command: String,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            driver: Driver::Xmpp,
            domain: "localhost".into(),
            users: 100,
            devices: 1,
            contacts: 20,
            login_rate: 200.0,
            message_rate: 500.0,
            message_bytes: 64,
            presence_rate: 0.0,
            reconnect_rate: 0.0,
            offline_fraction: 0.0,
            ramp_up_secs: 2,
            warm_up_secs: 2,
            duration_secs: 10,
            rooms: 0,
            password: "loadtest".into(),
            provision_command: String::new(),
        }
    }
}

pub const PRESETS: &[&str] = &["smoke", "chat", "presence-storm", "login-storm", "reconnect-storm", "rooms"];

impl Scenario {
    /// A built-in scenario.
    pub fn preset(name: &str) -> Result<Scenario, String> {
        let base = Scenario { name: name.to_string(), ..Scenario::default() };
        let s = match name {
            "smoke" => Scenario {
                users: 10,
                contacts: 3,
                message_rate: 50.0,
                ramp_up_secs: 0,
                warm_up_secs: 1,
                duration_secs: 3,
                ..base
            },
            "chat" => Scenario { users: 1000, contacts: 20, message_rate: 1000.0, duration_secs: 30, ..base },
            // Logins only: how fast the server authenticates and binds.
            "login-storm" => Scenario {
                users: 5000,
                login_rate: 2000.0,
                message_rate: 0.0,
                ramp_up_secs: 0,
                warm_up_secs: 0,
                duration_secs: 1,
                ..base
            },
            // Presence changes only: every change fans out to 20 subscribers.
            "presence-storm" => Scenario {
                users: 1000,
                contacts: 20,
                message_rate: 0.0,
                presence_rate: 500.0,
                duration_secs: 20,
                ..base
            },
            // Chat while a tenth of the users drop and log in again every second.
            "reconnect-storm" => Scenario {
                users: 1000,
                contacts: 20,
                message_rate: 500.0,
                reconnect_rate: 100.0,
                duration_secs: 20,
                ..base
            },
            // Group chat: 10 rooms of 100 occupants; each message reaches 99 of them.
            "rooms" => Scenario { users: 1000, rooms: 10, message_rate: 100.0, duration_secs: 20, ..base },
            other => return Err(format!("unknown preset {other:?}; presets: {}", PRESETS.join(", "))),
        };
        Ok(s)
    }

    /// Parses a TOML scenario: every field optional (defaults above), unknown fields refused.
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        s.validate()?;
        Ok(s)
    }

    /// Values that parse but make no sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.users < 2 {
            return Err("users: at least 2 (someone to write to)".into());
        }
        if self.devices == 0 {
            return Err("devices: at least 1".into());
        }
        if self.contacts == 0 || self.contacts >= self.users {
            return Err(format!("contacts: 1 to users - 1 ({})", self.users - 1));
        }
        if self.login_rate.is_nan() || self.login_rate <= 0.0 {
            return Err("login_rate: must be above 0".into());
        }
        if self.message_rate.is_nan() || self.message_rate < 0.0 {
            return Err("message_rate: must not be negative".into());
        }
        if self.presence_rate.is_nan() || self.presence_rate < 0.0 {
            return Err("presence_rate: must not be negative".into());
        }
        if self.reconnect_rate.is_nan() || self.reconnect_rate < 0.0 {
            return Err("reconnect_rate: must not be negative".into());
        }
        if self.presence_rate > 0.0 && self.offline_fraction > 0.0 {
            return Err("presence_rate: needs every user online (offline_fraction 0)".into());
        }
        if self.message_bytes < 16 || self.message_bytes > 64 * 1024 {
            return Err("message_bytes: 16 to 65536".into());
        }
        if !(0.0..1.0).contains(&self.offline_fraction) {
            return Err("offline_fraction: 0 or more, below 1".into());
        }
        if self.duration_secs == 0 {
            return Err("duration_secs: at least 1".into());
        }
        if self.rooms > 0 {
            if self.driver != Driver::Xmpp {
                return Err("rooms: only with the xmpp driver".into());
            }
            if self.rooms * 2 > self.online_users() {
                return Err("rooms: at most half the online users (two occupants a room)".into());
            }
            if self.presence_rate > 0.0 {
                return Err("presence_rate: not with rooms (occupant presence is the rooms' own)".into());
            }
        }
        if self.domain.is_empty() {
            return Err("domain: must not be empty".into());
        }
        Ok(())
    }

    /// Users that connect (the rest stay offline and only receive into their archives).
    pub fn online_users(&self) -> usize {
        let offline = (self.users as f64 * self.offline_fraction).floor() as usize;
        self.users - offline
    }

    /// The room user `u` is an occupant of, in a rooms scenario.
    pub fn room_of(&self, u: usize) -> Option<String> {
        (self.rooms > 0).then(|| format!("lt-room{}@conference.{}", u % self.rooms, self.domain))
    }

    /// Who user `u` writes to: its next `contacts` neighbours in the ring.
    pub fn contact(&self, u: usize, k: usize) -> usize {
        (u + 1 + k % self.contacts) % self.users
    }

    /// The share of the full rates offered `t` seconds after sending starts (the ramp).
    pub fn ramp_at(&self, t: f64) -> f64 {
        if self.ramp_up_secs == 0 || t >= self.ramp_up_secs as f64 {
            1.0
        } else {
            (t / self.ramp_up_secs as f64).max(0.05)
        }
    }

    /// Seconds from the start of sending to the end of the measured window.
    pub fn sending_secs(&self) -> u64 {
        self.ramp_up_secs + self.warm_up_secs + self.duration_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for p in PRESETS {
            Scenario::preset(p).unwrap().validate().unwrap();
        }
        assert!(Scenario::preset("nope").unwrap_err().contains("smoke"));
    }

    #[test]
    fn bad_files_name_the_field() {
        assert!(Scenario::from_toml("userz = 3").unwrap_err().contains("userz"));
        assert!(Scenario::from_toml("users = \"many\"").unwrap_err().contains("users"));
        assert!(Scenario::from_toml("users = 1").unwrap_err().starts_with("users"));
        assert!(Scenario::from_toml("users = 5\ncontacts = 5").unwrap_err().starts_with("contacts"));
        assert!(Scenario::from_toml("offline_fraction = 1.5").unwrap_err().starts_with("offline_fraction"));
        assert!(Scenario::from_toml("driver = \"smtp\"").unwrap_err().contains("driver"));
        assert!(Scenario::from_toml("presence_rate = -1.0").unwrap_err().starts_with("presence_rate"));
        let mixed = "presence_rate = 5.0\noffline_fraction = 0.5";
        assert!(Scenario::from_toml(mixed).unwrap_err().starts_with("presence_rate"));
        assert_eq!(Scenario::from_toml("driver = \"grpc\"").unwrap().driver, Driver::Grpc);
        assert!(Scenario::from_toml("rooms = 2\ndriver = \"grpc\"").unwrap_err().starts_with("rooms"));
        assert!(Scenario::from_toml("rooms = 60").unwrap_err().starts_with("rooms"));
        let rooms = Scenario::from_toml("rooms = 3").unwrap();
        assert_eq!(rooms.room_of(4).as_deref(), Some("lt-room1@conference.localhost"));
        assert_eq!(Scenario::default().room_of(4), None);
        let ok = Scenario::from_toml("users = 50\nmessage_rate = 10.0").unwrap();
        assert_eq!((ok.users, ok.message_rate, ok.contacts), (50, 10.0, 20));
    }

    #[test]
    fn contacts_ring_and_ramp() {
        let s = Scenario { users: 10, contacts: 3, ramp_up_secs: 10, message_rate: 100.0, ..Scenario::default() };
        let to: Vec<usize> = (0..3).map(|k| s.contact(8, k)).collect();
        assert_eq!(to, [9, 0, 1]);
        assert_eq!(s.ramp_at(5.0), 0.5);
        assert_eq!(s.ramp_at(20.0), 1.0);
        assert_eq!(Scenario { offline_fraction: 0.25, users: 8, ..s }.online_users(), 6);
    }
}
