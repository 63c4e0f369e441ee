//! [`watcher`]: one kind's objects as an endless stream of [`Event`]s — list, then watch,
//! resume, and re-list when history is gone.
//!
//! ```text
//!  LIST (limit/continue) ─► Init, InitApply…, InitDone
//!        │ resourceVersion of the list
//!        ▼
//!  WATCH rv=N, allowWatchBookmarks ─► Apply / Delete (only rv > last seen)
//!        │ stream end, transport error, idle timeout ─► backoff, WATCH rv=last seen
//!        │ 410 Expired (ERROR event or refused watch) ─► LIST again
//! ```
//!
//! The decisions live in the pure `state` machine; this module only performs the requests,
//! sleeps the backoff and times out idle streams. Failures are logged and retried forever: the
//! stream never ends and never yields an error.

mod state;

use std::collections::VecDeque;
use std::time::Duration;

use futures::{Stream, StreamExt};
use stead_api::DynamicObject;

use crate::backoff::{Backoff, BackoffConfig};
use crate::client::{ApiResource, Client, ListParams, WatchParams, WatchStream};
use state::{Phase, Retry, State};

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A (re)list starts: what follows up to [`Event::InitDone`] is the complete state.
    Init,
    /// One object of the (re)list.
    InitApply(DynamicObject),
    /// The (re)list is complete; objects not in it are gone.
    InitDone,
    /// An object was added or changed.
    Apply(DynamicObject),
    /// An object was deleted (its last state).
    Delete(DynamicObject),
}

/// What to watch and how patiently.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Only objects in this namespace (namespaced kinds); `None` for all.
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Objects per list page; `None` lists everything at once.
    pub page_size: Option<u64>,
    /// Reconnect when no event or bookmark arrived for this long.
    pub idle_timeout: Option<Duration>,
    /// Asks the server to end each watch after this many seconds.
    pub server_timeout_seconds: Option<u64>,
    /// Delays between failed requests.
    pub backoff: BackoffConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: None,
            label_selector: None,
            field_selector: None,
            page_size: Some(500),
            idle_timeout: Some(Duration::from_secs(330)),
            server_timeout_seconds: Some(290),
            backoff: BackoffConfig {
                base: Duration::from_millis(200),
                factor: 2.0,
                max: Duration::from_secs(30),
            },
        }
    }
}

impl Config {
    /// Only objects in `namespace`.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects matching a label selector.
    #[must_use]
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Reconnect after this long without a sign of life (`None`: never).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

struct Driver<C> {
    client: C,
    resource: ApiResource,
    config: Config,
    state: State,
    backoff: Backoff,
    stream: Option<WatchStream>,
    pending: VecDeque<Event>,
    delay: Option<Duration>,
}

impl<C: Client> Driver<C> {
    fn retry(&mut self, retry: Retry) {
        self.stream = None;
        self.delay = match retry {
            Retry::Now => None,
            Retry::AfterBackoff => Some(self.backoff.next_delay()),
        };
    }

    /// Makes one request (or reads one stream event); events land in `pending`.
    async fn step(&mut self) {
        if let Some(delay) = self.delay.take() {
            tokio::time::sleep(delay).await;
        }
        let namespace = self.config.namespace.as_deref();
        match self.state.phase() {
            Phase::Empty | Phase::Listing { .. } => {
                let params = ListParams {
                    label_selector: self.config.label_selector.clone(),
                    field_selector: self.config.field_selector.clone(),
                    limit: self.config.page_size,
                    continue_token: self.state.continue_token().map(str::to_owned),
                };
                match self.client.list(&self.resource, namespace, &params).await {
                    Ok(page) => {
                        self.backoff.reset();
                        let events = self.state.on_list_page(page);
                        self.pending.extend(events);
                    }
                    Err(error) => {
                        tracing::warn!(kind = %self.resource.kind, %error, "list failed");
                        let retry = self.state.on_list_error(&error);
                        self.retry(retry);
                    }
                }
            }
            Phase::Resume => {
                let params = WatchParams {
                    resource_version: Some(self.state.resource_version().to_owned())
                        .filter(|rv| !rv.is_empty()),
                    label_selector: self.config.label_selector.clone(),
                    field_selector: self.config.field_selector.clone(),
                    allow_bookmarks: true,
                    timeout_seconds: self.config.server_timeout_seconds,
                };
                match self.client.watch(&self.resource, namespace, &params).await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.state.on_watch_opened();
                    }
                    Err(error) => {
                        tracing::warn!(kind = %self.resource.kind, %error, "watch failed");
                        let retry = self.state.on_watch_error(&error);
                        self.retry(retry);
                    }
                }
            }
            Phase::Watching => {
                let Some(stream) = self.stream.as_mut() else {
                    // Unreachable by construction; resuming is always safe.
                    let retry = self.state.on_watch_end();
                    self.retry(retry);
                    return;
                };
                let next = match self.config.idle_timeout {
                    Some(idle) => tokio::time::timeout(idle, stream.next()).await,
                    None => Ok(stream.next().await),
                };
                match next {
                    Err(_elapsed) => {
                        tracing::debug!(kind = %self.resource.kind, "watch idle, reconnecting");
                        let retry = self.state.on_watch_idle();
                        self.retry(retry);
                    }
                    Ok(None) => {
                        let retry = self.state.on_watch_end();
                        self.retry(retry);
                    }
                    Ok(Some(Ok(event))) => {
                        let (event, retry) = self.state.on_watch_event(event);
                        match retry {
                            Some(retry) => {
                                tracing::warn!(kind = %self.resource.kind, "watch ended by the server");
                                self.retry(retry);
                            }
                            None => self.backoff.reset(),
                        }
                        self.pending.extend(event);
                    }
                    Ok(Some(Err(error))) => {
                        tracing::warn!(kind = %self.resource.kind, %error, "watch stream failed");
                        let retry = self.state.on_watch_error(&error);
                        self.retry(retry);
                    }
                }
            }
        }
    }
}

/// Watches one kind: a never-ending stream of [`Event`]s that survives disconnects and
/// compactions (see the module docs).
pub fn watcher<C: Client>(
    client: C,
    resource: ApiResource,
    config: Config,
) -> impl Stream<Item = Event> + Send + 'static {
    let driver = Driver {
        client,
        resource,
        backoff: Backoff::new(config.backoff),
        config,
        state: State::default(),
        stream: None,
        pending: VecDeque::new(),
        delay: None,
    };
    futures::stream::unfold(driver, |mut driver| async move {
        loop {
            if let Some(event) = driver.pending.pop_front() {
                return Some((event, driver));
            }
            driver.step().await;
        }
    })
}

#[cfg(test)]
mod tests;
