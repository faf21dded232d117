//! `luksfuse umount` (`close`): unmount and wait for the daemon (see `luksfuse::unmount`).

use crate::cli::UmountArgs;
use luksfuse::error::{Error, Result};
use luksfuse::unmount::{UnmountConfig, Unmounted};
use std::time::Duration;

pub fn run(a: &UmountArgs) -> Result<()> {
    let timeout = Duration::try_from_secs_f64(a.timeout)
        .map_err(|_| Error::usage("--timeout must be a number of seconds, 0 or more"))?;
    let cfg = UnmountConfig {
        mountpoint: a.mountpoint.clone(),
        lazy: a.lazy,
        timeout,
    };
    match luksfuse::unmount::run(&cfg)? {
        Unmounted::Served { pid } => log::info!("daemon {pid} has synced and exited"),
        Unmounted::Stale => log::warn!(
            "{}: cleared a stale mount (its daemon was gone)",
            a.mountpoint.display()
        ),
        Unmounted::NoDaemon => {}
    }
    Ok(())
}
