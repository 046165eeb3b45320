//! Every peer the harness can run: a module each, registered once in [`ALL`].

mod embedded;
mod kafka;
mod kinesis;
mod nats;
mod raw;
mod redis;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use futures::future::LocalBoxFuture;

use crate::peer::Peer;

/// What peers need from the machine: programs the harness does not carry.
#[derive(Debug)]
pub(crate) struct Tools {
    /// The project's tools directory (`scripts/servers.sh` installs tansu and kinesalite
    /// there).
    pub(crate) dir: PathBuf,
    /// The `cloudstream` binary (`serve`).
    pub(crate) cloudstream: PathBuf,
    /// A `nats-server` of 2.10 or later (for `sync_interval`).
    pub(crate) nats_server: PathBuf,
    /// Where servers write their output.
    pub(crate) logs: PathBuf,
}

/// Starts a peer with its data in a fresh directory.
type Start = for<'a> fn(&'a Path, &'a Tools) -> LocalBoxFuture<'a, Result<Box<dyn Peer>>>;

/// A kind of peer.
pub(crate) struct Kind {
    /// Its name in `--peers` and in the table.
    pub(crate) name: &'static str,
    /// What it is, for `--list`.
    pub(crate) about: &'static str,
    /// What an acknowledgement means at its setting.
    pub(crate) durability: &'static str,
    pub(crate) start: Start,
}

/// Every peer, in the order they run: the raw disk first (the physical limit), then
/// cloudstream, then the others.
pub(crate) const ALL: &[Kind] = &[
    raw::KIND,
    embedded::KIND,
    serve::KIND,
    redis::ALWAYS,
    redis::EVERYSEC,
    nats::ALWAYS,
    nats::DEFAULT,
    kafka::KIND,
    kinesis::KINESALITE,
    kinesis::MOTO,
];

/// The peers `names` picks (all of them if empty), in the order of [`ALL`].
pub(crate) fn chosen(names: &[String]) -> Result<Vec<&'static Kind>> {
    for name in names {
        if !ALL.iter().any(|k| k.name == name) {
            bail!("no peer {name:?}: see --list");
        }
    }
    Ok(ALL
        .iter()
        .filter(|k| names.is_empty() || names.iter().any(|n| n == k.name))
        .collect())
}
