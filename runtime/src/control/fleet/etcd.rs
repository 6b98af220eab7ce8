//! The fleet's desired state in etcd: one key per plugin,
//! `<prefix>plugins/<name>`, holding a [`DesiredState`] as JSON, changed only
//! by a compare-and-swap on the key's `mod_revision` — so two operators who
//! read the same revision cannot both write, and the loser is told who won.
//! Replicas report under `<prefix>replicas/<id>` ([`ReplicaStatus`] as JSON,
//! under a lease, so a replica that dies drops out of every readiness check).
//!
//! Behind the `etcd` feature: etcd-client compiles etcd's protos with protoc.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

use super::desired::{DesiredState, ReplicaStatus};

/// Why an etcd operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// etcd could not be reached or refused the request.
    #[error("etcd ({endpoints}): {step}: {message}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// What was being done.
        step: String,
        /// etcd-client's message.
        message: String,
    },
    /// A key holds something that is not the JSON it should.
    #[error("etcd key {key} does not hold a valid {what}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// `plugin state` or `replica status`.
        what: &'static str,
        /// serde's message.
        message: String,
    },
    /// Someone else changed the plugin's state since it was read.
    #[error(
        "{plugin} was changed by someone else since it was read (revision {read}, now {now}, \
         generation {generation}); read it again and decide again"
    )]
    Conflict {
        /// The plugin.
        plugin: String,
        /// The revision the change was based on (0: it did not exist).
        read: i64,
        /// The key's revision now (0: deleted).
        now: i64,
        /// The generation now written.
        generation: u64,
    },
}

/// Plugin name → its state, or why its key could not be read.
pub type Entries = BTreeMap<String, Result<Versioned<DesiredState>, EtcdError>>;

/// One plugin's key after a watch event: its new state, `None` if it was
/// deleted, or why the new value could not be read.
pub type Change = Result<Option<Versioned<DesiredState>>, EtcdError>;

/// A value read from etcd with the revision it was last changed at (0: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The key's `mod_revision`; what a compare-and-swap compares against.
    pub revision: i64,
}

/// The fleet's keys under one prefix (one environment: `/scorehost/prod/`).
#[derive(Clone)]
pub struct FleetStore {
    client: Client,
    prefix: String,
    endpoints: String,
}

impl FleetStore {
    /// Connects to `endpoints` (`127.0.0.1:2379`, …) for the keys under
    /// `prefix`. Every request gives up after `timeout`.
    pub async fn connect(endpoints: &[String], prefix: &str, timeout: Duration) -> Result<Self, EtcdError> {
        let joined = endpoints.join(",");
        // HTTP/2 pings find a connection that died silently (no RST, a
        // dropped route) within seconds, instead of the kernel's minutes.
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options)).await.map_err(|e| EtcdError::Unavailable {
            endpoints: joined.clone(),
            step: "connecting".into(),
            message: e.to_string(),
        })?;
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self { client, prefix, endpoints: joined })
    }

    fn unavailable(&self, step: &str) -> impl FnOnce(etcd_client::Error) -> EtcdError + use<> {
        let (endpoints, step) = (self.endpoints.clone(), step.to_owned());
        move |e| EtcdError::Unavailable { endpoints, step, message: e.to_string() }
    }

    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<etcd_client::GetResponse, EtcdError> {
        self.client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(self.unavailable(&format!("listing {prefix}")))
    }

    fn plugin_key(&self, name: &str) -> String {
        format!("{}plugins/{name}", self.prefix)
    }

    fn replica_key(&self, id: &str) -> String {
        format!("{}replicas/{id}", self.prefix)
    }

    /// The state of plugin `name` and its revision (`None`, 0 when the fleet has no such plugin).
    pub async fn plugin(&self, name: &str) -> Result<Versioned<Option<DesiredState>>, EtcdError> {
        let key = self.plugin_key(name);
        let resp = self
            .client
            .clone()
            .get(key.as_str(), None)
            .await
            .map_err(self.unavailable(&format!("reading {key}")))?;
        match resp.kvs().first() {
            None => Ok(Versioned { value: None, revision: 0 }),
            Some(kv) => Ok(Versioned {
                value: Some(parse(&key, kv.value(), "plugin state")?),
                revision: kv.mod_revision(),
            }),
        }
    }

    /// Every plugin's state, and the store revision they were read at (where a watch starts).
    /// One key that does not parse fails the whole list (see [`FleetStore::plugin_entries`]).
    pub async fn plugins(&self) -> Result<(BTreeMap<String, Versioned<DesiredState>>, i64), EtcdError> {
        let (entries, revision) = self.plugin_entries().await?;
        let plugins = entries.into_iter().map(|(name, v)| v.map(|v| (name, v))).collect::<Result<_, _>>()?;
        Ok((plugins, revision))
    }

    /// Every plugin's state, each parsed on its own (a replica keeps following
    /// the other plugins when one key is corrupt), and the list's revision.
    pub async fn plugin_entries(&self) -> Result<(Entries, i64), EtcdError> {
        let prefix = self.plugin_key("");
        let resp = self.list(&prefix).await?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let name = key[prefix.len()..].to_owned();
            let value = parse(&key, kv.value(), "plugin state")
                .map(|value| Versioned { value, revision: kv.mod_revision() });
            out.insert(name, value);
        }
        Ok((out, resp.header().map_or(0, |h| h.revision())))
    }

    /// Writes `state` for plugin `name` if the key is still at `read` (0: if
    /// it does not exist yet); otherwise [`EtcdError::Conflict`] with what is
    /// there now. Returns the key's new revision.
    pub async fn put_if(&self, name: &str, read: i64, state: &DesiredState) -> Result<i64, EtcdError> {
        let key = self.plugin_key(name);
        let json = serde_json::to_vec(state).expect("the state serialises");
        let compare = if read == 0 {
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.as_str(), CompareOp::Equal, read)
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key.as_str(), json, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.client.clone().txn(txn).await.map_err(self.unavailable(&format!("writing {key}")))?;
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let now = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| (kv.mod_revision(), kv.value().to_vec())),
            _ => None,
        });
        let (now, generation) = match now {
            Some((rev, bytes)) => (rev, parse::<DesiredState>(&key, &bytes, "plugin state")?.generation),
            None => (0, 0),
        };
        Err(EtcdError::Conflict { plugin: name.into(), read, now, generation })
    }

    /// Every replica's latest report.
    pub async fn replicas(&self) -> Result<Vec<ReplicaStatus>, EtcdError> {
        let prefix = self.replica_key("");
        let resp = self.list(&prefix).await?;
        resp.kvs()
            .iter()
            .map(|kv| parse(&String::from_utf8_lossy(kv.key()), kv.value(), "replica status"))
            .collect()
    }

    /// Grants a lease of `ttl` for a replica's reports: they vanish when it
    /// stops renewing it (it died, or was cut off from etcd).
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let resp = self
            .client
            .clone()
            .lease_grant(ttl.as_secs().max(1) as i64, None)
            .await
            .map_err(self.unavailable("granting a lease"))?;
        Ok(resp.id())
    }

    /// Publishes a replica's report under `lease`.
    pub async fn report(&self, status: &ReplicaStatus, lease: i64) -> Result<(), EtcdError> {
        let key = self.replica_key(&status.id);
        let json = serde_json::to_vec(status).expect("the status serialises");
        self.client
            .clone()
            .put(key.as_str(), json, Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(self.unavailable(&format!("writing {key}")))?;
        Ok(())
    }
}

impl FleetStore {
    /// Watches every plugin's state from `revision` on (the revision a
    /// [`FleetStore::plugins`] list was read at, plus one).
    pub async fn watch_plugins(&self, revision: i64) -> Result<PluginWatch, EtcdError> {
        let prefix = self.plugin_key("");
        let options = WatchOptions::new().with_prefix().with_start_revision(revision);
        let stream = self
            .client
            .clone()
            .watch(prefix.as_str(), Some(options))
            .await
            .map_err(self.unavailable(&format!("watching {prefix}")))?;
        Ok(PluginWatch { stream, prefix, endpoints: self.endpoints.clone() })
    }

    /// Renews `lease` once: `Ok(false)` when etcd says it is gone (expired
    /// while this replica was cut off), so a new one must be granted.
    pub async fn keep_alive(&self, lease: i64, keeper: &mut Option<Keeper>) -> Result<bool, EtcdError> {
        if keeper.as_ref().is_none_or(|k| k.lease != lease) {
            let (k, s) = self
                .client
                .clone()
                .lease_keep_alive(lease)
                .await
                .map_err(self.unavailable("keeping the lease alive"))?;
            *keeper = Some(Keeper { lease, keeper: k, stream: s });
        }
        let k = keeper.as_mut().expect("set above");
        let result = async {
            k.keeper.keep_alive().await?;
            k.stream.message().await
        }
        .await;
        match result {
            Ok(Some(resp)) => Ok(resp.ttl() > 0),
            Ok(None) => {
                *keeper = None;
                Err(EtcdError::Unavailable {
                    endpoints: self.endpoints.clone(),
                    step: "keeping the lease alive".into(),
                    message: "the keep-alive stream ended".into(),
                })
            }
            Err(e) => {
                *keeper = None;
                Err(self.unavailable("keeping the lease alive")(e))
            }
        }
    }

    /// Compacts etcd's history up to `revision`: watches from before it are
    /// canceled. What an operator's `etcdctl compact` does; the tests use it
    /// to prove a replica re-lists instead of losing an update.
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        self.client.clone().compact(revision, None).await.map_err(self.unavailable("compacting"))?;
        Ok(())
    }

    /// Revokes `lease`: a replica that stops takes its report with it at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.client.clone().lease_revoke(lease).await.map_err(self.unavailable("revoking the lease"))?;
        Ok(())
    }
}

/// An open keep-alive stream for one lease (see [`FleetStore::keep_alive`]).
pub struct Keeper {
    lease: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

/// What a watch of the plugins' states saw next.
#[derive(Debug)]
pub enum Watched {
    /// Plugins whose state changed: the new state (`None`: the key was
    /// deleted), or why the new value could not be read.
    Changed(Vec<(String, Change)>),
    /// The start revision was compacted away: list again, then watch from the list's revision.
    Compacted(i64),
    /// The watch was canceled or its stream ended: list again.
    Ended(String),
}

/// A watch of every plugin's state (see [`FleetStore::watch_plugins`]).
pub struct PluginWatch {
    stream: WatchStream,
    prefix: String,
    endpoints: String,
}

impl PluginWatch {
    /// Waits for the next change. `Err` only when etcd is unreachable or the
    /// stream broke: the caller lists again when etcd answers.
    pub async fn next(&mut self) -> Result<Watched, EtcdError> {
        loop {
            let message = self.stream.message().await.map_err(|e| EtcdError::Unavailable {
                endpoints: self.endpoints.clone(),
                step: format!("watching {}", self.prefix),
                message: e.to_string(),
            })?;
            let Some(resp) = message else { return Ok(Watched::Ended("the watch stream ended".into())) };
            // etcd 3.4 answers a compacted start revision with `created`, then
            // a `canceled` message carrying compact_revision: check every one.
            if resp.compact_revision() > 0 {
                return Ok(Watched::Compacted(resp.compact_revision()));
            }
            if resp.canceled() {
                return Ok(Watched::Ended(format!("the watch was canceled: {}", resp.cancel_reason())));
            }
            let mut changed = Vec::new();
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(name) = key.strip_prefix(&self.prefix) else { continue };
                let value = match event.event_type() {
                    EventType::Delete => Ok(None),
                    EventType::Put => parse(&key, kv.value(), "plugin state")
                        .map(|value| Some(Versioned { value, revision: kv.mod_revision() })),
                };
                changed.push((name.to_owned(), value));
            }
            if !changed.is_empty() {
                return Ok(Watched::Changed(changed));
            }
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    what: &'static str,
) -> Result<T, EtcdError> {
    serde_json::from_slice(bytes).map_err(|e| EtcdError::Corrupt {
        key: key.into(),
        what,
        message: e.to_string(),
    })
}
