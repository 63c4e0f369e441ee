//! [`FakeClient`]: the resource API in memory, with the server's semantics and switches to
//! break it.
//!
//! ```text
//!   create/replace/patch/delete ──► lifecycle rules (stead_api::lifecycle) ──► objects
//!                                         │ one new revision per change
//!                                         ▼
//!                                      history [(rev, ADDED|MODIFIED|DELETED, object)]
//!                                         │ compact(rev) drops entries <= rev
//!   watch(rv=N) ◄── replays history > N, then waits on `notify` for more
//! ```
//!
//! Every write goes through the same pure rules the server uses (uid, generation bumps only on
//! spec change, finalizers, the status subresource), so controllers see what they would see
//! against stead. Faults: [`FakeClient::fail_next`] makes calls fail with a transport error,
//! [`FakeClient::break_watches`] ends every open watch with a transport error and
//! [`FakeClient::stall_watches`] silences them (a dead connection that never closes).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures::StreamExt;
use stead_api::lifecycle::{
    IdGenerator, KindRules, WriteOutcome, prepare_create, prepare_delete, prepare_status_update,
    prepare_update,
};
use stead_api::patch::{apply_json_patch, apply_merge_patch, parse_json_patch};
use stead_api::selector::{FieldSelector, Selector};
use stead_api::{DynamicObject, NameRule, Scope, Timestamp};
use tokio::sync::watch;

use crate::client::{
    ApiResource, Client, ClientError, Deleted, ListParams, ObjectList, Patch, PatchParams, Status,
    WatchEvent, WatchParams, WatchStream,
};

/// (plural, namespace or "", name).
type Key = (String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
struct Entry {
    revision: u64,
    plural: String,
    change: Change,
    object: DynamicObject,
}

/// Watches wake on any change of this: a new revision, a bookmark request, a break or a stall.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Signal {
    revision: u64,
    bookmarks: u64,
    breaks: u64,
    stalls: u64,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    compacted: u64,
    objects: BTreeMap<Key, DynamicObject>,
    history: Vec<Entry>,
    next_uid: u64,
    /// Paged lists in progress: token -> (revision, the remaining items).
    lists: HashMap<String, (u64, Vec<DynamicObject>)>,
    next_list: u64,
}

struct Shared {
    state: Mutex<State>,
    signal: watch::Sender<Signal>,
    watch_calls: AtomicUsize,
    list_calls: AtomicUsize,
}

/// Fault switches; each [`FakeClient::with_own_faults`] view has its own.
#[derive(Debug, Default)]
struct Faults {
    fail_next: AtomicUsize,
    calls: AtomicU64,
}

/// An in-memory API server. Clones share the store and the fault switches.
#[derive(Clone)]
pub struct FakeClient {
    shared: Arc<Shared>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for FakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClient")
            .field("revision", &self.revision())
            .finish()
    }
}

impl Default for FakeClient {
    fn default() -> Self {
        FakeClient::new()
    }
}

struct Uids<'a>(&'a mut u64);

impl IdGenerator for Uids<'_> {
    fn uid(&mut self) -> String {
        *self.0 += 1;
        format!("00000000-0000-0000-0000-{:012}", self.0)
    }

    fn name_suffix(&mut self) -> String {
        format!("{:05}", *self.0 % 100_000)
    }
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> ClientError {
    ClientError::Api(Status {
        code,
        reason: reason.to_owned(),
        message: message.into(),
    })
}

fn not_found(resource: &ApiResource, name: &str) -> ClientError {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.plural),
    )
}

fn invalid(message: impl Into<String>) -> ClientError {
    status(422, "Invalid", message)
}

fn rules(resource: &ApiResource) -> KindRules {
    KindRules {
        scope: if resource.namespaced {
            Scope::Namespaced
        } else {
            Scope::Cluster
        },
        status_subresource: true,
        name_rule: NameRule::Dns1123Subdomain,
    }
}

fn key(resource: &ApiResource, namespace: Option<&str>, name: &str) -> Key {
    let ns = if resource.namespaced {
        namespace.unwrap_or_default()
    } else {
        ""
    };
    (resource.plural.clone(), ns.to_owned(), name.to_owned())
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Selects objects of one kind (and namespace) by the list/watch selectors.
struct Filter {
    plural: String,
    namespace: Option<String>,
    labels: Selector,
    fields: FieldSelector,
}

impl Filter {
    fn new(
        resource: &ApiResource,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Filter, ClientError> {
        let labels = Selector::parse(label_selector.unwrap_or_default())
            .map_err(|e| status(400, "BadRequest", e.to_string()))?;
        let fields = FieldSelector::parse(field_selector.unwrap_or_default())
            .map_err(|e| status(400, "BadRequest", e.to_string()))?;
        Ok(Filter {
            plural: resource.plural.clone(),
            namespace: namespace.filter(|_| resource.namespaced).map(str::to_owned),
            labels,
            fields,
        })
    }

    fn matches(&self, plural: &str, object: &DynamicObject) -> bool {
        plural == self.plural
            && (self.namespace.is_none() || object.namespace() == self.namespace.as_deref())
            && self.labels.matches(&object.labels())
            && self.fields.matches_object(object)
    }
}

impl FakeClient {
    /// An empty store at revision 1 (like a fresh stead, whose first write is revision 2).
    pub fn new() -> Self {
        let (signal, _) = watch::channel(Signal {
            revision: 1,
            ..Signal::default()
        });
        FakeClient {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    revision: 1,
                    ..State::default()
                }),
                signal,
                watch_calls: AtomicUsize::new(0),
                list_calls: AtomicUsize::new(0),
            }),
            faults: Arc::new(Faults::default()),
        }
    }

    /// A client on the same store with its own fault switches: a second network path, e.g.
    /// one per leader-election candidate.
    pub fn with_own_faults(&self) -> Self {
        FakeClient {
            shared: Arc::clone(&self.shared),
            faults: Arc::new(Faults::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every write is one step).
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.state().revision
    }

    /// The next `n` calls through this client fail with [`ClientError::Transport`].
    pub fn fail_next(&self, n: usize) {
        self.faults.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many calls this client (and its clones sharing the fault switches) made.
    pub fn calls(&self) -> u64 {
        self.faults.calls.load(Ordering::SeqCst)
    }

    /// How many WATCH requests reached the store (from any view).
    pub fn watch_calls(&self) -> usize {
        self.shared.watch_calls.load(Ordering::SeqCst)
    }

    /// How many LIST pages were requested (from any view).
    pub fn list_calls(&self) -> usize {
        self.shared.list_calls.load(Ordering::SeqCst)
    }

    /// Ends every open watch stream with a transport error.
    pub fn break_watches(&self) {
        self.shared.signal.send_modify(|s| s.breaks += 1);
    }

    /// Silences every open watch stream for good (without ending it), like a connection whose
    /// peer vanished; watches opened later work.
    pub fn stall_watches(&self) {
        self.shared.signal.send_modify(|s| s.stalls += 1);
    }

    /// Sends a BOOKMARK at the current revision on every open watch that allows bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared.signal.send_modify(|s| s.bookmarks += 1);
    }

    /// Forgets history up to and including `revision`: watches from there get 410 Expired.
    pub fn compact(&self, revision: u64) {
        let mut state = self.state();
        let revision = revision.min(state.revision);
        state.compacted = state.compacted.max(revision);
        state.history.retain(|e| e.revision > revision);
        state.lists.retain(|_, (rev, _)| *rev > revision);
    }

    fn check_fault(&self) -> Result<(), ClientError> {
        self.faults.calls.fetch_add(1, Ordering::SeqCst);
        let injected = self
            .faults
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if injected {
            Err(ClientError::Transport("injected fault".into()))
        } else {
            Ok(())
        }
    }

    /// Stores `object` at a new revision and records the event.
    fn commit(
        &self,
        state: &mut State,
        key: Key,
        change: Change,
        mut object: DynamicObject,
    ) -> DynamicObject {
        state.revision += 1;
        let revision = state.revision;
        object.set_resource_version(&revision.to_string());
        if change == Change::Deleted {
            state.objects.remove(&key);
        } else {
            state.objects.insert(key.clone(), object.clone());
        }
        state.history.push(Entry {
            revision,
            plural: key.0,
            change,
            object: object.clone(),
        });
        self.shared.signal.send_modify(|s| s.revision = revision);
        object
    }

    /// Applies a lifecycle outcome for the object at `key`.
    fn write(
        &self,
        state: &mut State,
        key: Key,
        stored: &DynamicObject,
        outcome: WriteOutcome,
    ) -> DynamicObject {
        match outcome {
            WriteOutcome::Write(object) => self.commit(state, key, Change::Modified, object),
            WriteOutcome::Unchanged => stored.clone(),
            WriteOutcome::Delete(object) => self.commit(state, key, Change::Deleted, object),
        }
    }

    fn update(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        status_only: bool,
        change: impl FnOnce(&DynamicObject) -> Result<DynamicObject, ClientError>,
    ) -> Result<DynamicObject, ClientError> {
        let key = key(resource, namespace, name);
        let mut state = self.state();
        let stored = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        let new = change(&stored)?;
        let sent_rv = new.resource_version();
        if !sent_rv.is_empty() && sent_rv != stored.resource_version() {
            return Err(status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.plural
                ),
            ));
        }
        let rules = rules(resource);
        let outcome = if status_only {
            prepare_status_update(&stored, &new, &rules)
        } else {
            prepare_update(&stored, new, &rules)
        }
        .map_err(|e| invalid(e.to_string()))?;
        Ok(self.write(&mut state, key, &stored, outcome))
    }

    /// Creates or replaces an object without any fault injection: a test's own setup.
    pub fn put(&self, resource: &ApiResource, object: DynamicObject) -> DynamicObject {
        let key = key(resource, object.namespace(), object.name());
        let mut state = self.state();
        let mut object = object;
        match state.objects.get(&key).cloned() {
            Some(stored) => {
                object.set_resource_version("");
                match prepare_update(&stored, object, &rules(resource)) {
                    Ok(outcome) => self.write(&mut state, key, &stored, outcome),
                    Err(_) => stored,
                }
            }
            None => {
                let mut uid = state.next_uid;
                let created =
                    prepare_create(object.clone(), &rules(resource), now(), &mut Uids(&mut uid));
                state.next_uid = uid;
                match created {
                    Ok(created) => self.commit(&mut state, key, Change::Added, created),
                    Err(_) => object,
                }
            }
        }
    }

    /// The stored object, without fault injection.
    pub fn peek(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<DynamicObject> {
        self.state()
            .objects
            .get(&key(resource, namespace, name))
            .cloned()
    }

    /// Every stored object of a kind, without fault injection.
    pub fn objects(&self, resource: &ApiResource) -> Vec<DynamicObject> {
        self.state()
            .objects
            .iter()
            .filter(|((plural, _, _), _)| *plural == resource.plural)
            .map(|(_, o)| o.clone())
            .collect()
    }
}

/// One WATCH: where it is in the history and what it may see.
struct WatchCursor {
    client: FakeClient,
    filter: Filter,
    after: u64,
    bookmarks: bool,
    signal: watch::Receiver<Signal>,
    opened: Signal,
    bookmarks_sent: u64,
    done: bool,
}

impl WatchCursor {
    async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        if self.done {
            return None;
        }
        loop {
            let now = *self.signal.borrow_and_update();
            if now.stalls > self.opened.stalls {
                futures::future::pending::<()>().await;
            }
            if now.breaks > self.opened.breaks {
                self.done = true;
                return Some(Err(ClientError::Transport("watch connection reset".into())));
            }
            {
                let state = self.client.state();
                if self.after < state.compacted {
                    self.done = true;
                    return Some(Ok(WatchEvent::Error(Status {
                        code: 410,
                        reason: "Expired".into(),
                        message: format!(
                            "too old resource version: {} ({})",
                            self.after, state.compacted
                        ),
                    })));
                }
                let start = state.history.partition_point(|e| e.revision <= self.after);
                if let Some(entry) = state.history[start..]
                    .iter()
                    .find(|e| self.filter.matches(&e.plural, &e.object))
                {
                    self.after = entry.revision;
                    let object = entry.object.clone();
                    return Some(Ok(match entry.change {
                        Change::Added => WatchEvent::Added(object),
                        Change::Modified => WatchEvent::Modified(object),
                        Change::Deleted => WatchEvent::Deleted(object),
                    }));
                }
                // Nothing for this watch up to the current revision.
                self.after = state.revision;
                if self.bookmarks && now.bookmarks > self.bookmarks_sent {
                    self.bookmarks_sent = now.bookmarks;
                    return Some(Ok(WatchEvent::Bookmark {
                        resource_version: state.revision.to_string(),
                    }));
                }
            }
            if self.signal.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl Client for FakeClient {
    async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<DynamicObject, ClientError> {
        self.check_fault()?;
        self.peek(resource, namespace, name)
            .ok_or_else(|| not_found(resource, name))
    }

    async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClientError> {
        self.check_fault()?;
        self.shared.list_calls.fetch_add(1, Ordering::SeqCst);
        let mut state = self.state();
        let (revision, mut items) = match &params.continue_token {
            Some(token) => state.lists.remove(token).ok_or_else(|| {
                status(410, "Expired", "the provided continue parameter is too old")
            })?,
            None => {
                let filter = Filter::new(
                    resource,
                    namespace,
                    params.label_selector.as_deref(),
                    params.field_selector.as_deref(),
                )?;
                let items = state
                    .objects
                    .iter()
                    .filter(|((plural, _, _), o)| filter.matches(plural, o))
                    .map(|(_, o)| o.clone())
                    .collect();
                (state.revision, items)
            }
        };
        let limit = params
            .limit
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok());
        let continue_token = match limit {
            Some(limit) if items.len() > limit => {
                let rest = items.split_off(limit);
                state.next_list += 1;
                let token = format!("list-{}", state.next_list);
                state.lists.insert(token.clone(), (revision, rest));
                Some(token)
            }
            _ => None,
        };
        Ok(ObjectList {
            items,
            resource_version: revision.to_string(),
            continue_token,
        })
    }

    async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
    ) -> Result<WatchStream, ClientError> {
        self.check_fault()?;
        self.shared.watch_calls.fetch_add(1, Ordering::SeqCst);
        let filter = Filter::new(
            resource,
            namespace,
            params.label_selector.as_deref(),
            params.field_selector.as_deref(),
        )?;
        let after = match &params.resource_version {
            Some(rv) if !rv.is_empty() && rv != "0" => rv
                .parse::<u64>()
                .map_err(|_| invalid(format!("invalid resourceVersion {rv:?}")))?,
            // Without a resourceVersion a watch starts with the current state as ADDED events;
            // the fake replays whatever history it still has instead.
            _ => self.state().compacted,
        };
        let signal = self.shared.signal.subscribe();
        let opened = *signal.borrow();
        let cursor = WatchCursor {
            client: self.clone(),
            filter,
            after,
            bookmarks: params.allow_bookmarks,
            signal,
            opened,
            bookmarks_sent: opened.bookmarks,
            done: false,
        };
        let stream = futures::stream::unfold(cursor, |mut cursor| async move {
            cursor.next().await.map(|event| (event, cursor))
        });
        Ok(stream.boxed())
    }

    async fn create(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        self.check_fault()?;
        if resource.namespaced && object.namespace().is_none() {
            return Err(invalid(
                "metadata.namespace: required for a namespaced kind",
            ));
        }
        let key = key(resource, object.namespace(), object.name());
        let mut state = self.state();
        if state.objects.contains_key(&key) {
            return Err(status(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", resource.plural, object.name()),
            ));
        }
        let mut uid = state.next_uid;
        let created = prepare_create(object.clone(), &rules(resource), now(), &mut Uids(&mut uid))
            .map_err(|e| invalid(e.to_string()))?;
        state.next_uid = uid;
        Ok(self.commit(&mut state, key, Change::Added, created))
    }

    async fn replace(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        self.check_fault()?;
        self.update(resource, object.namespace(), object.name(), false, |_| {
            Ok(object.clone())
        })
    }

    async fn replace_status(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        self.check_fault()?;
        self.update(resource, object.namespace(), object.name(), true, |_| {
            Ok(object.clone())
        })
    }

    async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
        _params: &PatchParams,
        status_only: bool,
    ) -> Result<DynamicObject, ClientError> {
        self.check_fault()?;
        self.update(resource, namespace, name, status_only, |stored| {
            let patched = match patch {
                Patch::Merge(body) => apply_merge_patch(&stored.to_value(), body),
                Patch::Json(body) => {
                    let operations = parse_json_patch(body).map_err(|e| invalid(e.to_string()))?;
                    apply_json_patch(&stored.to_value(), &operations)
                        .map_err(|e| invalid(e.to_string()))?
                }
                Patch::Apply(_) => {
                    return Err(status(
                        415,
                        "UnsupportedMediaType",
                        "the fake client does not implement server-side apply",
                    ));
                }
            };
            DynamicObject::from_value(patched).map_err(|e| invalid(e.to_string()))
        })
    }

    async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClientError> {
        self.check_fault()?;
        let key = key(resource, namespace, name);
        let mut state = self.state();
        let stored = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        Ok(match prepare_delete(&stored, now()) {
            WriteOutcome::Delete(object) => {
                Deleted::Gone(self.commit(&mut state, key, Change::Deleted, object))
            }
            WriteOutcome::Write(object) => {
                Deleted::Pending(self.commit(&mut state, key, Change::Modified, object))
            }
            WriteOutcome::Unchanged => Deleted::Pending(stored),
        })
    }
}
