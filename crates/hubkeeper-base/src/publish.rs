//! Publishing an actor's view on its `watch` channel: every actor owns one view and
//! tells its watchers only when the view really changed, so a loop that republishes
//! the same facts wakes nobody.

use tokio::sync::watch;

/// Replaces the view with `new`; watchers are woken only if it differs.
pub fn publish<T: PartialEq>(tx: &watch::Sender<T>, new: T) -> bool {
    tx.send_if_modified(|cur| {
        if *cur == new {
            false
        } else {
            *cur = new;
            true
        }
    })
}

/// Edits the view in place with `f`; watchers are woken only if it changed.
pub fn update<T: PartialEq + Clone>(tx: &watch::Sender<T>, f: impl FnOnce(&mut T)) -> bool {
    tx.send_if_modified(|cur| {
        let before = cur.clone();
        f(cur);
        *cur != before
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_wakes_watchers() {
        let (tx, mut rx) = watch::channel(1);
        rx.mark_unchanged();
        assert!(!publish(&tx, 1));
        assert!(!rx.has_changed().unwrap());
        assert!(publish(&tx, 2));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!update(&tx, |v| *v = 2));
        assert!(update(&tx, |v| *v += 1));
        assert_eq!(*rx.borrow_and_update(), 3);
    }
}
