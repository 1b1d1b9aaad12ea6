//! The XMPP gateway (issue 5, in progress). So far: the restricted-XML stream parser that the
//! c2s listener will sit on.

pub mod xml;
