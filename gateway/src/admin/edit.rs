//! What a write does to the config, as an edit: one resource put (added,
//! or in place of the one with its id) or removed, or a whole new config.
//!
//! The writer applies a batch's edits in place to one copy of the config,
//! and an edit yields the resources it changes as it is applied: no copy
//! of the whole config, and no comparison of it with the one before, per
//! write (what is left per write is finding the resource by id; measured
//! in bench/README.md, "Propagation"). The copy a batch starts from is a
//! pointer per resource ([`SharedConfig`]).

use std::sync::Arc;

use pingora_config::v1;
use v1::resource::{Kind as K, Value};

use crate::admin::resources::Kind;
use crate::admin::store::{self, Change, Key};
use crate::shared::{SharedConfig, SharedResource};

/// One write's edit of the config. (A route is large, but an edit is made
/// once per write and moved into the config: boxing it would only add an
/// allocation.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The whole config (apply): its changes are found by comparing it
    /// with the one before.
    Whole(v1::Config),
    /// A resource put in place of the one with its id, or added.
    Put(Value),
    /// The resource with this key removed (nothing when there is none).
    Remove(Key),
}

impl From<v1::Config> for Edit {
    fn from(config: v1::Config) -> Edit {
        Edit::Whole(config)
    }
}

/// What an edit did. (Large when a put changed nothing, as [`Edit`] is:
/// it is returned once per write and matched at once.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Applied {
    /// Nothing changed; a put's resource is given back.
    Unchanged(Option<Value>),
    /// The resources changed (key order), and how to take it back.
    Changed(Vec<Change>, Undo),
}

/// How to take an applied edit back.
pub(crate) enum Undo {
    Whole(Arc<SharedConfig>),
    /// Put `old` back at `index` of the kind's collection, or, with no
    /// `old`, remove what was added there. (The resource itself, still
    /// shared with the revisions that hold it.)
    Put {
        kind: K,
        index: usize,
        old: Option<SharedResource>,
    },
    /// Insert `old` again at `index`.
    Removed {
        index: usize,
        old: SharedResource,
    },
}

/// Applies `edit` to `config`, copying it only when it is shared and the
/// edit changes it. `ordered`: the store keeps each collection in id order
/// (the etcd store), so a resource added goes to its place in that order
/// and a whole config is sorted so.
pub(crate) fn apply(config: &mut Arc<SharedConfig>, edit: Edit, ordered: bool) -> Applied {
    match edit {
        Edit::Whole(new) => {
            let new = SharedConfig::from(new);
            let mut new = if ordered { store::sort_by_id(new) } else { new };
            let changes = store::changes(config, &new);
            // Only the order differs when no resource changed (and order
            // matters for routes of equal precedence).
            if changes.is_empty() && new == **config {
                return Applied::Unchanged(None);
            }
            share_unchanged(&mut new, config);
            let old = std::mem::replace(config, Arc::new(new));
            Applied::Changed(changes, Undo::Whole(old))
        }
        Edit::Put(value) => match value {
            Value::Route(r) => put(config, r, ordered),
            Value::Service(r) => put(config, r, ordered),
            Value::Upstream(r) => put(config, r, ordered),
            Value::Consumer(r) => put(config, r, ordered),
            Value::Ssl(r) => put(config, r, ordered),
            Value::GlobalRule(r) => put(config, r, ordered),
            Value::PluginConfig(r) => put(config, r, ordered),
        },
        Edit::Remove(key) => match key.0 {
            K::Route => remove::<v1::Route>(config, key),
            K::Service => remove::<v1::Service>(config, key),
            K::Upstream => remove::<v1::Upstream>(config, key),
            K::Consumer => remove::<v1::Consumer>(config, key),
            K::Ssl => remove::<v1::Ssl>(config, key),
            K::GlobalRule => remove::<v1::GlobalRule>(config, key),
            K::PluginConfig => remove::<v1::PluginConfig>(config, key),
            K::Unspecified => Applied::Unchanged(None),
        },
    }
}

/// Takes back what [`apply`] did.
pub(crate) fn undo(config: &mut Arc<SharedConfig>, undo: Undo) {
    match undo {
        Undo::Whole(old) => *config = old,
        Undo::Put { kind, index, old } => match kind {
            K::Route => put_back::<v1::Route>(config, index, old),
            K::Service => put_back::<v1::Service>(config, index, old),
            K::Upstream => put_back::<v1::Upstream>(config, index, old),
            K::Consumer => put_back::<v1::Consumer>(config, index, old),
            K::Ssl => put_back::<v1::Ssl>(config, index, old),
            K::GlobalRule => put_back::<v1::GlobalRule>(config, index, old),
            K::PluginConfig => put_back::<v1::PluginConfig>(config, index, old),
            K::Unspecified => {}
        },
        Undo::Removed { index, old } => match old {
            SharedResource::Route(r) => insert_at(config, index, r),
            SharedResource::Service(r) => insert_at(config, index, r),
            SharedResource::Upstream(r) => insert_at(config, index, r),
            SharedResource::Consumer(r) => insert_at(config, index, r),
            SharedResource::Ssl(r) => insert_at(config, index, r),
            SharedResource::GlobalRule(r) => insert_at(config, index, r),
            SharedResource::PluginConfig(r) => insert_at(config, index, r),
        },
    }
}

fn resource<R: Kind>(r: R) -> v1::Resource {
    v1::Resource { value: Some(r.into_value()) }
}

/// Takes, for each resource of `new` equal to the one with its id in
/// `old`, `old`'s: the revisions then share it (a whole config arrives as
/// new copies of every resource).
fn share_unchanged(new: &mut SharedConfig, old: &SharedConfig) {
    fn kind<R: Kind>(new: &mut SharedConfig, old: &SharedConfig) {
        let by_id: std::collections::HashMap<&str, &Arc<R>> = R::items(old).iter().map(|r| (r.id(), r)).collect();
        for r in R::items_mut(new).iter_mut() {
            if let Some(o) = by_id.get(r.id()).filter(|o| ***o == *r) {
                *r = Arc::clone(o);
            }
        }
    }
    kind::<v1::Route>(new, old);
    kind::<v1::Service>(new, old);
    kind::<v1::Upstream>(new, old);
    kind::<v1::Consumer>(new, old);
    kind::<v1::Ssl>(new, old);
    kind::<v1::GlobalRule>(new, old);
    kind::<v1::PluginConfig>(new, old);
}

fn put<R: Kind>(config: &mut Arc<SharedConfig>, r: R, ordered: bool) -> Applied {
    let items = R::items(config);
    let found = items.iter().position(|x| x.id() == r.id());
    if found.is_some_and(|i| *items[i] == r) {
        return Applied::Unchanged(Some(r.into_value()));
    }
    let key = (R::KIND, r.id().to_owned());
    let new = resource(r.clone());
    let items = R::items_mut(Arc::make_mut(config));
    match found {
        Some(index) => {
            let old = std::mem::replace(&mut items[index], Arc::new(r));
            let change = (key, Some(resource(R::clone(&old))), Some(new));
            Applied::Changed(vec![change], Undo::Put { kind: R::KIND, index, old: Some(R::into_shared(old)) })
        }
        None => {
            let index = if ordered { items.partition_point(|x| x.id() < r.id()) } else { items.len() };
            items.insert(index, Arc::new(r));
            Applied::Changed(vec![(key, None, Some(new))], Undo::Put { kind: R::KIND, index, old: None })
        }
    }
}

fn remove<R: Kind>(config: &mut Arc<SharedConfig>, key: Key) -> Applied {
    let Some(index) = R::items(config).iter().position(|x| x.id() == key.1) else {
        return Applied::Unchanged(None);
    };
    let old = R::items_mut(Arc::make_mut(config)).remove(index);
    let change = (key, Some(resource(R::clone(&old))), None);
    Applied::Changed(vec![change], Undo::Removed { index, old: R::into_shared(old) })
}

fn put_back<R: Kind>(config: &mut Arc<SharedConfig>, index: usize, old: Option<SharedResource>) {
    let items = R::items_mut(Arc::make_mut(config));
    match old.and_then(R::from_shared) {
        Some(old) => items[index] = old,
        None => {
            items.remove(index);
        }
    }
}

fn insert_at<R: Kind>(config: &mut Arc<SharedConfig>, index: usize, r: Arc<R>) {
    R::items_mut(Arc::make_mut(config)).insert(index, r);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> v1::Config {
        match pingora_config::load_str::<v1::Config>(text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    }

    const BASE: &str = "upstreams:\n  - { id: b, nodes: [{ host: 127.0.0.1, port: 1 }] }\n  - { id: d, nodes: [{ host: 127.0.0.1, port: 2 }] }\n";

    fn upstream(id: &str, port: u32) -> Value {
        let c = load(&format!("upstreams:\n  - {{ id: {id}, nodes: [{{ host: 127.0.0.1, port: {port} }}] }}\n"));
        Value::Upstream(c.upstreams.into_iter().next().unwrap_or_default())
    }

    fn ids(c: &SharedConfig) -> Vec<&str> {
        c.upstreams.iter().map(|u| u.id.as_str()).collect()
    }

    /// Every edit gives the changes that comparing the configs before and
    /// after it gives, touches only its own copy of a shared config (and
    /// shares the resources it did not change with it), and its undo gives
    /// back the config before it.
    #[test]
    fn an_edit_yields_its_changes_and_its_undo_restores_the_config() {
        let base = Arc::new(SharedConfig::from(load(BASE)));
        let edits = [
            (Edit::Put(upstream("b", 9)), false, vec!["b", "d"]),
            (Edit::Put(upstream("a", 3)), false, vec!["b", "d", "a"]),
            (Edit::Put(upstream("c", 3)), true, vec!["b", "c", "d"]),
            (Edit::Remove((K::Upstream, "b".into())), false, vec!["d"]),
            (Edit::Whole(load("upstreams:\n  - { id: d, nodes: [{ host: 127.0.0.1, port: 2 }] }\n")), false, vec!["d"]),
        ];
        for (edit, ordered, after) in edits {
            let mut config = base.clone();
            let Applied::Changed(changes, undo) = apply(&mut config, edit.clone(), ordered) else {
                panic!("{edit:?} changed nothing")
            };
            assert_eq!(ids(&config), after, "{edit:?}");
            assert_eq!(changes, store::changes(&base, &config), "{edit:?}");
            assert_eq!(ids(&base), ["b", "d"], "the shared config was changed by {edit:?}");
            let d = config.upstreams.iter().find(|u| u.id == "d");
            assert!(d.is_some_and(|d| Arc::ptr_eq(d, &base.upstreams[1])), "{edit:?} copied `d`");
            super::undo(&mut config, undo);
            assert_eq!(*config, *base, "{edit:?}");
            let shared = config.upstreams.iter().zip(&base.upstreams).all(|(a, b)| Arc::ptr_eq(a, b));
            assert!(shared, "{edit:?}: the undo put back copies");
        }
        // Nothing to change: the config is not even copied.
        for edit in [Edit::Put(upstream("b", 1)), Edit::Remove((K::Upstream, "x".into())), Edit::Whole(load(BASE))] {
            let mut config = base.clone();
            assert!(matches!(apply(&mut config, edit, false), Applied::Unchanged(_)));
            assert!(Arc::ptr_eq(&config, &base));
        }
    }
}
