//! The watcher's pure state machine: what to request next and which server answers become
//! events. No I/O and no clock, so every transition is tested directly.
//!
//! ```text
//!            ┌──────────── 410 Gone (list continue, watch start, ERROR event) ───────────┐
//!            ▼                                                                            │
//!  ┌──────► Empty ──list page──► Listing{continue} ──last page──► Resume ──watch ok──► Watching
//!  │         (Init)               (InitApply…)      (InitDone)      ▲                    │
//!  │                                                                └─ stream end, idle, ┘
//!  │                                                                   transport error
//!  └── nothing else returns to Empty: a resumable failure keeps the last resourceVersion
//! ```
//!
//! Every watch resumes from the highest resourceVersion seen (objects or bookmarks); an event
//! at or below it is a replay and is dropped, so the output never goes back in time.

use stead_api::DynamicObject;

use super::Event;
use crate::client::{ClientError, ObjectList, WatchEvent};

/// What the driver should request next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A (re)list from the first page.
    Empty,
    /// A list in progress; the next page continues here.
    Listing { continue_token: String },
    /// Open a watch from the last resourceVersion.
    Resume,
    /// A watch stream is open.
    Watching,
}

/// When to make the next request after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Right away: a 410 (the re-list is the remedy) or an idle connection.
    Now,
    /// After the connection backoff: the server or the network is having trouble.
    AfterBackoff,
}

/// The watcher's position in the list/watch cycle and its resourceVersion.
#[derive(Debug, Clone)]
pub(crate) struct State {
    phase: Phase,
    /// The resourceVersion to resume from, as the server spelled it.
    resource_version: String,
    /// `resource_version` as a number, when it is one (stead's always are).
    revision: Option<u64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Empty,
            resource_version: String::new(),
            revision: None,
        }
    }
}

impl State {
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The resourceVersion a watch resumes from.
    pub(crate) fn resource_version(&self) -> &str {
        &self.resource_version
    }

    /// The continue token of the next list page, if a list is in progress.
    pub(crate) fn continue_token(&self) -> Option<&str> {
        match &self.phase {
            Phase::Listing { continue_token } => Some(continue_token),
            _ => None,
        }
    }

    /// A page of the (re)list arrived.
    pub(crate) fn on_list_page(&mut self, page: ObjectList) -> Vec<Event> {
        let mut events = Vec::with_capacity(page.items.len() + 2);
        if self.phase == Phase::Empty {
            events.push(Event::Init);
        }
        events.extend(page.items.into_iter().map(Event::InitApply));
        match page.continue_token {
            Some(continue_token) => self.phase = Phase::Listing { continue_token },
            None => {
                // A list is a full replacement, so its revision replaces ours even if lower
                // (which a linearizable server never answers).
                self.revision = page.resource_version.parse().ok();
                self.resource_version = page.resource_version;
                self.phase = Phase::Resume;
                events.push(Event::InitDone);
            }
        }
        events
    }

    /// A list page failed: an expired continue token restarts the list, anything else retries
    /// the same page.
    pub(crate) fn on_list_error(&mut self, error: &ClientError) -> Retry {
        if error.is_gone() {
            self.phase = Phase::Empty;
            return Retry::Now;
        }
        Retry::AfterBackoff
    }

    /// The server accepted a watch.
    pub(crate) fn on_watch_opened(&mut self) {
        self.phase = Phase::Watching;
    }

    /// A watch request, or an open stream, failed.
    pub(crate) fn on_watch_error(&mut self, error: &ClientError) -> Retry {
        if error.is_gone() {
            self.phase = Phase::Empty;
            Retry::Now
        } else {
            self.phase = Phase::Resume;
            Retry::AfterBackoff
        }
    }

    /// The stream ended; resume where it stopped.
    pub(crate) fn on_watch_end(&mut self) -> Retry {
        self.phase = Phase::Resume;
        Retry::AfterBackoff
    }

    /// Nothing arrived for too long; the connection may be dead without knowing it.
    pub(crate) fn on_watch_idle(&mut self) -> Retry {
        self.phase = Phase::Resume;
        Retry::Now
    }

    /// An event of the open stream; answers the event to emit, if any, and the retry policy
    /// if the stream is over.
    pub(crate) fn on_watch_event(&mut self, event: WatchEvent) -> (Option<Event>, Option<Retry>) {
        match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                (self.advance(&object).then_some(Event::Apply(object)), None)
            }
            WatchEvent::Deleted(object) => {
                (self.advance(&object).then_some(Event::Delete(object)), None)
            }
            WatchEvent::Bookmark { resource_version } => {
                self.advance_to(&resource_version);
                (None, None)
            }
            WatchEvent::Error(status) => {
                let retry = if status.code == 410 {
                    self.phase = Phase::Empty;
                    Retry::Now
                } else {
                    self.phase = Phase::Resume;
                    Retry::AfterBackoff
                };
                (None, Some(retry))
            }
        }
    }

    fn advance(&mut self, object: &DynamicObject) -> bool {
        self.advance_to(object.resource_version())
    }

    /// Moves to `resource_version` unless it is not newer than what was seen; answers whether
    /// it moved. Versions that are not numbers cannot be ordered and are taken as they come.
    fn advance_to(&mut self, resource_version: &str) -> bool {
        let revision = resource_version.parse::<u64>().ok();
        if let (Some(new), Some(seen)) = (revision, self.revision)
            && new <= seen
        {
            return false;
        }
        if revision.is_some() {
            self.revision = revision;
        }
        if !resource_version.is_empty() {
            self.resource_version = resource_version.to_owned();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::client::Status;

    fn obj(name: &str, rv: &str) -> DynamicObject {
        DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "resourceVersion": rv}
        }))
        .unwrap_or_default()
    }

    fn page(items: &[(&str, &str)], rv: &str, token: Option<&str>) -> ObjectList {
        ObjectList {
            items: items.iter().map(|(n, r)| obj(n, r)).collect(),
            resource_version: rv.into(),
            continue_token: token.map(str::to_owned),
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Init => "init".to_owned(),
                Event::InitApply(o) => format!("init-apply {}", o.name()),
                Event::InitDone => "init-done".to_owned(),
                Event::Apply(o) => format!("apply {}@{}", o.name(), o.resource_version()),
                Event::Delete(o) => format!("delete {}@{}", o.name(), o.resource_version()),
            })
            .collect()
    }

    fn gone() -> ClientError {
        ClientError::Api(Status {
            code: 410,
            reason: "Expired".into(),
            message: "too old".into(),
        })
    }

    #[test]
    fn a_paged_list_is_framed_by_init_and_init_done_and_resumes_at_its_revision() {
        let mut state = State::default();
        let first = state.on_list_page(page(&[("a", "3")], "9", Some("t1")));
        assert_eq!(state.continue_token(), Some("t1"));
        let second = state.on_list_page(page(&[("b", "8")], "9", None));
        assert_eq!(names(&first), ["init", "init-apply a"]);
        assert_eq!(names(&second), ["init-apply b", "init-done"]);
        assert_eq!(
            (state.phase(), state.resource_version()),
            (&Phase::Resume, "9")
        );
    }

    #[test]
    fn events_at_or_below_the_last_revision_are_dropped() {
        let mut state = State::default();
        state.on_list_page(page(&[], "5", None));
        state.on_watch_opened();
        let inputs = [
            WatchEvent::Modified(obj("a", "5")),
            WatchEvent::Added(obj("a", "6")),
            WatchEvent::Modified(obj("a", "4")),
            WatchEvent::Bookmark {
                resource_version: "9".into(),
            },
            WatchEvent::Deleted(obj("a", "8")),
            WatchEvent::Deleted(obj("b", "10")),
        ];
        let emitted: Vec<Event> = inputs
            .into_iter()
            .filter_map(|e| state.on_watch_event(e).0)
            .collect();
        assert_eq!(names(&emitted), ["apply a@6", "delete b@10"]);
        assert_eq!(state.resource_version(), "10");
    }

    #[test]
    fn failures_decide_between_relist_resume_and_backoff() {
        let transport = ClientError::Transport("reset".into());
        type Case = (&'static str, fn(&mut State) -> Retry, Phase, Retry);
        let cases: [Case; 6] = [
            (
                "watch 410",
                |s| s.on_watch_error(&gone()),
                Phase::Empty,
                Retry::Now,
            ),
            (
                "watch transport error",
                |s| s.on_watch_error(&ClientError::Transport("x".into())),
                Phase::Resume,
                Retry::AfterBackoff,
            ),
            (
                "stream end",
                State::on_watch_end,
                Phase::Resume,
                Retry::AfterBackoff,
            ),
            ("idle", State::on_watch_idle, Phase::Resume, Retry::Now),
            (
                "ERROR 410 event",
                |s| {
                    let status = Status {
                        code: 410,
                        reason: "Expired".into(),
                        message: String::new(),
                    };
                    s.on_watch_event(WatchEvent::Error(status))
                        .1
                        .unwrap_or(Retry::AfterBackoff)
                },
                Phase::Empty,
                Retry::Now,
            ),
            (
                "ERROR 500 event",
                |s| {
                    let status = Status {
                        code: 500,
                        reason: "Internal".into(),
                        message: String::new(),
                    };
                    s.on_watch_event(WatchEvent::Error(status))
                        .1
                        .unwrap_or(Retry::Now)
                },
                Phase::Resume,
                Retry::AfterBackoff,
            ),
        ];
        for (what, fail, phase, retry) in cases {
            let mut state = State::default();
            state.on_list_page(page(&[], "7", None));
            state.on_watch_opened();
            assert_eq!(fail(&mut state), retry, "{what}");
            assert_eq!(state.phase(), &phase, "{what}");
        }
        let mut listing = State::default();
        listing.on_list_page(page(&[("a", "1")], "7", Some("t")));
        assert_eq!(listing.on_list_error(&transport), Retry::AfterBackoff);
        assert_eq!(
            listing.continue_token(),
            Some("t"),
            "a failed page is retried"
        );
        assert_eq!(listing.on_list_error(&gone()), Retry::Now);
        assert_eq!(
            listing.phase(),
            &Phase::Empty,
            "an expired continue token re-lists"
        );
    }
}
