//! Group commit for `--durability sync`: puts whose batches committed
//! while a sync was running share the next one, instead of each calling
//! `fdatasync` in turn (the engine's journal lock is held during a sync,
//! so turns would serialise every sync behind every other).
//!
//! A put takes a ticket once its batch is committed (its bytes are in the
//! journal file, written to the OS), then waits until a sync that *began*
//! after its ticket was taken has ended: the first waiter with no sync
//! running starts one covering every ticket taken so far. A failed sync
//! fails every ticket it covered, even if a later one succeeds (after a
//! failed `fsync` the kernel may have dropped the dirty pages it had).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::sync::lock;

/// Failed syncs remembered (the engine refuses writes after a failed sync
/// until the store is reopened, so there are seldom more than one).
const FAILURES_KEPT: usize = 1024;

#[derive(Default)]
struct State {
    /// Tickets taken (commits waiting for a sync, or synced).
    taken: u64,
    /// Every ticket up to this one has its outcome: syncs run one at a
    /// time, each covering the tickets after the last one's up to its own.
    resolved: u64,
    syncing: bool,
    /// Failed syncs: the tickets each covered (`(after, up to]`), its error.
    failed: VecDeque<(u64, u64, String)>,
}

#[derive(Default)]
pub struct GroupSync {
    state: Mutex<State>,
    ended: Condvar,
}

impl GroupSync {
    /// Called after a commit: returns once a sync begun after it has ended
    /// (with its error if that sync failed). `sync` is called by at most
    /// one caller at a time.
    pub fn after_commit(&self, sync: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let mut sync = Some(sync);
        let mut st = lock(&self.state);
        st.taken += 1;
        let ticket = st.taken;
        loop {
            if ticket <= st.resolved {
                return match st
                    .failed
                    .iter()
                    .find(|(after, upto, _)| *after < ticket && ticket <= *upto)
                {
                    Some((_, _, e)) => Err(e.clone()),
                    None => Ok(()),
                };
            }
            if st.syncing {
                st = self.ended.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This caller syncs for everyone who took a ticket so far.
            let Some(f) = sync.take() else {
                return Err("sync already run".into());
            };
            st.syncing = true;
            let (after, upto) = (st.resolved, st.taken);
            drop(st);
            let r = f();
            st = lock(&self.state);
            st.syncing = false;
            if let Err(e) = r {
                if st.failed.len() == FAILURES_KEPT {
                    st.failed.pop_front();
                }
                st.failed.push_back((after, upto, e));
            }
            st.resolved = upto;
            self.ended.notify_all();
        }
    }

    /// Tickets taken so far.
    #[cfg(test)]
    fn taken(&self) -> u64 {
        lock(&self.state).taken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn commits_made_during_a_sync_share_the_next() {
        let g = Arc::new(GroupSync::default());
        let syncs = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = {
            let (g, syncs) = (Arc::clone(&g), Arc::clone(&syncs));
            std::thread::spawn(move || {
                g.after_commit(|| {
                    syncs.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).map_err(|e| e.to_string())?;
                    release_rx.recv().map_err(|e| e.to_string())
                })
            })
        };
        started_rx.recv().expect("the first sync starts");
        // Three more commits while it runs: they wait, then share one sync.
        let others: Vec<_> = (0..3)
            .map(|_| {
                let (g, syncs) = (Arc::clone(&g), Arc::clone(&syncs));
                std::thread::spawn(move || {
                    g.after_commit(|| {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        while g.taken() < 4 {
            std::thread::yield_now();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 1, "none syncs during a sync");
        release_tx.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Ok(()));
        for t in others {
            assert_eq!(t.join().expect("other"), Ok(()));
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_sync_fails_every_commit_it_covered_even_after_a_later_success() {
        let g = Arc::new(GroupSync::default());
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        // A sync that succeeds, during which two commits are made…
        let first = {
            let g = Arc::clone(&g);
            std::thread::spawn(move || {
                g.after_commit(|| {
                    started_tx.send(()).map_err(|e| e.to_string())?;
                    release_rx.recv().map_err(|e| e.to_string())
                })
            })
        };
        started_rx.recv().expect("the first sync starts");
        let covered: Vec<_> = (0..2)
            .map(|_| {
                let g = Arc::clone(&g);
                std::thread::spawn(move || g.after_commit(|| Err("disk gone".into())))
            })
            .collect();
        while g.taken() < 3 {
            std::thread::yield_now();
        }
        release_tx.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Ok(()));
        // …whose shared sync fails: both get its error.
        for t in covered {
            assert_eq!(t.join().expect("covered"), Err("disk gone".into()));
        }
        // A later commit gets its own sync's outcome.
        let mut called = false;
        let later = g.after_commit(|| {
            called = true;
            Ok(())
        });
        assert_eq!(later, Ok(()));
        assert!(called, "a commit is never synced by a sync begun before it");
    }
}
