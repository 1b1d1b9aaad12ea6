//! Reading the directory server: users and groups in pages, each entry's attributes as the
//! configuration maps them; and checking a password by binding as its user.

use std::collections::HashMap;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::LdapConfig;

/// LDAP's "invalid credentials" result code.
const INVALID_CREDENTIALS: u32 = 49;
const PAGE: i32 = 500;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LdapUser {
    pub dn: String,
    pub uid: String,
    pub display_name: String,
    pub title: String,
    pub department: String,
    pub email: String,
    pub manager_dn: Option<String>,
    pub disabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LdapGroup {
    pub dn: String,
    pub name: String,
    pub description: String,
    /// Members' DNs: users, or groups.
    pub members: Vec<String>,
}

/// What the server held when it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LdapSnapshot {
    pub users: Vec<LdapUser>,
    pub groups: Vec<LdapGroup>,
}

/// DNs compared without case and without spaces around the commas.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',').map(str::trim).collect::<Vec<_>>().join(",").to_lowercase()
}

async fn connect(config: &LdapConfig) -> Result<ldap3::Ldap, String> {
    let settings = LdapConnSettings::new().set_conn_timeout(config.timeout());
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &config.url)
        .await
        .map_err(|e| format!("cannot reach the directory server {}: {e}", config.url))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// Reads every user and group the configuration selects.
pub async fn fetch(config: &LdapConfig) -> Result<LdapSnapshot, String> {
    let mut ldap = connect(config).await?;
    if !config.bind_dn.is_empty() {
        let password = config.password()?;
        ldap.with_timeout(config.timeout())
            .simple_bind(&config.bind_dn, &password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("the directory server refused the sync account {}: {e}", config.bind_dn))?;
    }
    let c = config;
    let user_attrs = [
        &c.uid_attribute,
        &c.display_name_attribute,
        &c.title_attribute,
        &c.department_attribute,
        &c.email_attribute,
        &c.manager_attribute,
        &c.disabled_attribute,
    ];
    let user_attrs: Vec<&str> = user_attrs.iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();
    let users = search(&mut ldap, config, &c.base_dn, &c.user_filter, user_attrs).await?;
    let group_attrs = [&c.group_name_attribute, &c.group_description_attribute, &c.member_attribute];
    let group_attrs: Vec<&str> = group_attrs.iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();
    let groups = search(&mut ldap, config, c.group_base(), &c.group_filter, group_attrs).await?;
    let _ = ldap.unbind().await;
    let first = |e: &HashMap<String, Vec<String>>, attr: &str| -> String {
        lookup(e, attr).and_then(|v| v.first().cloned()).unwrap_or_default()
    };
    let mut snapshot = LdapSnapshot::default();
    for (dn, e) in users {
        let uid = first(&e, &c.uid_attribute);
        if uid.is_empty() {
            tracing::warn!(%dn, "directory entry without {}; skipped", c.uid_attribute);
            continue;
        }
        let disabled = !c.disabled_attribute.is_empty()
            && lookup(&e, &c.disabled_attribute)
                .is_some_and(|v| v.iter().any(|v| v.eq_ignore_ascii_case(&c.disabled_value)));
        let manager = first(&e, &c.manager_attribute);
        snapshot.users.push(LdapUser {
            dn,
            uid,
            display_name: first(&e, &c.display_name_attribute),
            title: first(&e, &c.title_attribute),
            department: first(&e, &c.department_attribute),
            email: first(&e, &c.email_attribute),
            manager_dn: (!manager.is_empty()).then_some(manager),
            disabled,
        });
    }
    for (dn, e) in groups {
        snapshot.groups.push(LdapGroup {
            name: first(&e, &c.group_name_attribute),
            description: first(&e, &c.group_description_attribute),
            members: lookup(&e, &c.member_attribute).cloned().unwrap_or_default(),
            dn,
        });
    }
    Ok(snapshot)
}

/// Attribute names are compared without case, as LDAP does.
fn lookup<'a>(e: &'a HashMap<String, Vec<String>>, attr: &str) -> Option<&'a Vec<String>> {
    e.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).map(|(_, v)| v)
}

async fn search(
    ldap: &mut ldap3::Ldap,
    config: &LdapConfig,
    base: &str,
    filter: &str,
    attrs: Vec<&str>,
) -> Result<Vec<(String, HashMap<String, Vec<String>>)>, String> {
    let what = |e: ldap3::LdapError| format!("searching {base} for {filter}: {e}");
    let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE))];
    let mut stream = ldap
        .with_timeout(config.timeout())
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
        .await
        .map_err(what)?;
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await.map_err(what)? {
        // ldap3 panics on an entry it cannot decode: a broken server costs the sync, not the node.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(entry))) {
            Ok(e) => out.push((e.dn, e.attrs)),
            Err(_) => tracing::warn!(%base, "undecodable entry from the directory server; skipped"),
        }
    }
    stream.finish().await.success().map_err(what)?;
    Ok(out)
}

/// Whether `password` is `dn`'s, by binding to the server as `dn`. An empty password is
/// refused here: LDAP would take it as an anonymous bind and say yes.
pub async fn bind(config: &LdapConfig, dn: &str, password: &str) -> Result<bool, String> {
    if password.is_empty() || dn.is_empty() {
        return Ok(false);
    }
    let mut ldap = connect(config).await?;
    let result = ldap.with_timeout(config.timeout()).simple_bind(dn, password).await;
    let _ = ldap.unbind().await;
    match result {
        Ok(r) if r.rc == 0 => Ok(true),
        Ok(r) if r.rc == INVALID_CREDENTIALS => Ok(false),
        Ok(r) => Err(format!("the directory server answered the bind with code {}: {}", r.rc, r.text)),
        Err(e) => Err(format!("binding to the directory server: {e}")),
    }
}
