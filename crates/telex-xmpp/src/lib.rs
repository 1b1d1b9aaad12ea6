//! The XMPP gateway (issue 5, in progress). So far: the restricted-XML stream parser that the
//! c2s listener will sit on, and the translation between stanzas and session frames.

pub mod stanza;
pub mod xml;
