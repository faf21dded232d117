//! One request's pieces shared with a helper thread, so that a large read or write alone in
//! the process uses the second core (issue 17: at queue depth 1 the cipher pass and the
//! payload copy otherwise run strictly one after the other on one core).
//!
//! [`run`]`(n, f)` calls `f(0)`, …, `f(n - 1)` once each and returns when all have returned.
//! The caller posts the job to the process's one helper thread (a futex wake), then claims
//! pieces itself from a shared counter; the helper, once it is running, claims pieces from
//! the same counter. Nothing waits for the helper to start: on a machine whose other core is
//! busy the caller simply claims every piece, and takes the job back before the helper sees
//! it, so the worst case is the cost of one wake-up. Only one job is shared at a time: a
//! caller that finds the helper busy runs all of its pieces itself.
//!
//! The one `unsafe` of this module hands the helper a job that lives on the caller's stack;
//! see [`run`] for why the helper never touches it after `run` returns.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The pieces of one request, shared between the caller and the helper.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    /// The next piece to claim (may run past `n`).
    next: AtomicUsize,
    /// Set by the helper when it is done with the job: it touches nothing of it after.
    released: AtomicBool,
    /// What a piece run by the helper panicked with, re-raised by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Claims and runs pieces until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            (self.f)(i);
        }
    }
}

/// A job's address, as the helper's slot holds it.
struct Posted(*const Job<'static>);

// SAFETY: the pointer is only dereferenced by the helper while the caller of `run` keeps
// the job alive and waits for `released` (see `run`); `Job` is `Sync` (an `Fn + Sync`,
// atomics and a mutex), so sharing it with the helper thread is sound.
#[allow(unsafe_code)]
unsafe impl Send for Posted {}

/// State shared between callers and the helper thread.
struct Shared {
    /// The posted job, or `None`; `busy` is set while the helper works on one.
    slot: Mutex<Slot>,
    /// Wakes the helper when a job is posted.
    posted: Condvar,
    /// Wakes a caller when the helper released its job.
    released: Condvar,
}

struct Slot {
    job: Option<Posted>,
    busy: bool,
}

/// The helper thread of this process, started on first use. After a `fork` the child has no
/// helper thread: the process id tells a stale one, and a new one is started.
static HELPER: Mutex<Option<(u32, Arc<Shared>)>> = Mutex::new(None);

/// The helper's shared state, starting the thread if this process has none; `None` if it
/// cannot be started (the caller then does the work alone).
fn helper() -> Option<Arc<Shared>> {
    let mut h = lock(&HELPER);
    let pid = std::process::id();
    if let Some((owner, shared)) = h.as_ref() {
        if *owner == pid {
            return Some(Arc::clone(shared));
        }
    }
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            job: None,
            busy: false,
        }),
        posted: Condvar::new(),
        released: Condvar::new(),
    });
    let theirs = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("luksfuse-assist".into())
        .spawn(move || serve(&theirs))
        .ok()?;
    *h = Some((pid, Arc::clone(&shared)));
    Some(shared)
}

/// The helper thread: takes posted jobs and works on them until the process exits.
fn serve(shared: &Shared) {
    loop {
        let posted = {
            let mut slot = lock(&shared.slot);
            loop {
                if let Some(p) = slot.job.take() {
                    slot.busy = true;
                    break p;
                }
                slot = shared.posted.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: the caller that posted the job keeps it alive until it either takes it back
        // from the slot (we took it first, so it cannot) or sees `released` set below; we do
        // not touch the job after setting it.
        #[allow(unsafe_code)]
        let job = unsafe { &*posted.0 };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job.work())) {
            *lock(&job.panic) = Some(p);
        }
        let mut slot = lock(&shared.slot);
        slot.busy = false;
        job.released.store(true, Ordering::Release);
        // `job` may be gone from here on; only `shared` is used.
        shared.released.notify_all();
    }
}

/// Calls `f(i)` for every `i < n`, once each, some of them on the helper thread when it is
/// idle; returns when all have returned. A panic of `f` on the helper is re-raised here.
pub(crate) fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let job = Job {
        f,
        n,
        next: AtomicUsize::new(0),
        released: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    let shared = if n > 1 { helper() } else { None };
    let posted = shared.as_ref().is_some_and(|s| {
        let mut slot = lock(&s.slot);
        if slot.busy || slot.job.is_some() {
            return false;
        }
        // Lifetime erased: see the SAFETY comments of `Posted` and `serve`.
        slot.job = Some(Posted(std::ptr::from_ref(&job).cast::<Job<'static>>()));
        drop(slot);
        s.posted.notify_one();
        true
    });
    // A panic here must not leave the frame while the helper may still use `job`.
    let mine = catch_unwind(AssertUnwindSafe(|| job.work()));
    if let (true, Some(s)) = (posted, shared.as_ref()) {
        let mut slot = lock(&s.slot);
        if slot
            .job
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.0, std::ptr::from_ref(&job).cast()))
        {
            // The helper never saw it: every piece ran here.
            slot.job = None;
        } else {
            // The helper has it: wait until it lets go (it may still be running a piece).
            while !job.released.load(Ordering::Acquire) {
                slot = s.released.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
    if let Err(p) = mine {
        resume_unwind(p);
    }
    let theirs = lock(&job.panic).take();
    if let Some(p) = theirs {
        resume_unwind(p);
    }
}

/// `m` locked, poisoned or not (nothing here leaves the data half changed).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::thread::ThreadId;

    #[test]
    fn every_piece_runs_once_and_the_helper_takes_some() {
        let mut helped = false;
        for _ in 0..200 {
            let ran: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            let threads = Mutex::new(HashSet::<ThreadId>::new());
            run(64, &|i| {
                ran[i].fetch_add(1, Ordering::Relaxed);
                lock(&threads).insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_micros(50));
            });
            assert!(ran.iter().all(|r| r.load(Ordering::Relaxed) == 1));
            helped |= threads.into_inner().unwrap().len() == 2;
            if helped {
                break;
            }
        }
        assert!(helped, "the helper never ran a piece");
    }

    #[test]
    fn concurrent_callers_all_finish() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for k in 0..100 {
                        let sum = AtomicUsize::new(0);
                        run(8, &|i| {
                            sum.fetch_add(i + t + k, Ordering::Relaxed);
                        });
                        assert_eq!(sum.into_inner(), 28 + 8 * (t + k));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panic_on_the_helper_reaches_the_caller() {
        // Pieces that panic wherever they run: the caller's own panic or the helper's
        // re-raised one, and the helper keeps serving afterwards.
        for _ in 0..20 {
            let r = catch_unwind(|| run(4, &|_| panic!("piece failed")));
            assert!(r.is_err());
        }
        let sum = AtomicUsize::new(0);
        run(16, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.into_inner(), 120);
    }
}
