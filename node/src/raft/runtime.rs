//! The openraft runtime: tokio for tasks and timers, plus a thread-local random generator that
//! the simulator seeds, so election timeouts replay exactly under a seed.
//!
//! In production the generator is seeded from the OS on first use of each thread.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::AsyncRuntime;
use openraft::{OptionalSend, TokioInstant};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

thread_local! {
    static THREAD_RNG: RefCell<Option<ChaCha8Rng>> = const { RefCell::new(None) };
}

/// Seeds this thread's generator; the simulator calls it before starting a world.
pub fn seed_thread_rng(seed: u64) {
    THREAD_RNG.with(|cell| *cell.borrow_mut() = Some(ChaCha8Rng::seed_from_u64(seed)));
}

fn with_thread_rng<T>(action: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
    THREAD_RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = slot.get_or_insert_with(ChaCha8Rng::from_entropy);
        action(rng)
    })
}

/// A handle to the calling thread's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRng;

impl RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        with_thread_rng(|rng| rng.next_u32())
    }
    fn next_u64(&mut self) -> u64 {
        with_thread_rng(|rng| rng.next_u64())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        with_thread_rng(|rng| rng.fill_bytes(dest))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        with_thread_rng(|rng| rng.try_fill_bytes(dest))
    }
}

/// Tokio with a seedable random generator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RiffleRuntime;

impl AsyncRuntime for RiffleRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = openraft::async_runtime::TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (openraft::async_runtime::TokioOneShotSender(sender), receiver)
    }
}
