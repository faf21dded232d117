//! `luksfuse mount`: unlock, then serve the payloads (see `luksfuse::mount`).

use super::{open_header, unlock};
use crate::cli::{MountArgs, PayloadFormat};
use luksfuse::error::{Error, Reason, Result};
use luksfuse::image::Format;
use luksfuse::mount::MountConfig;

pub fn run(a: MountArgs) -> Result<()> {
    let MountArgs {
        key,
        readonly,
        foreground,
        options,
        name,
        payload_format,
        allow_backing,
        header: path,
        mut paths,
    } = a;
    let mountpoint = paths.pop().expect("clap requires a path or more");
    // `mount IMAGE MOUNTPOINT`: a qcow2 image with QEMU's own LUKS encryption is its own
    // header and payload.
    let embedded_luks = paths.is_empty();
    if embedded_luks {
        if super::embedded_header(&path)?.is_none() {
            return Err(Error::usage(
                "give the payload after the header: luksfuse mount HEADER PAYLOAD... MOUNTPOINT \
                 (only a qcow2 image with QEMU's own LUKS encryption is mounted alone)",
            ));
        }
        if payload_format == Some(PayloadFormat::Raw) {
            return Err(Error::usage(
                "--payload-format raw does not fit a qcow2 image with its own encryption",
            ));
        }
        paths.push(path.clone());
    }
    let payloads = paths;
    let mut fuse_options: Vec<String> = options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    // `-o ro` / `-o rw` mean what --readonly means (as for mount(8) and fstab).
    let readonly = readonly || fuse_options.iter().any(|o| o == "ro");
    fuse_options.retain(|o| o != "ro" && o != "rw");
    let (file, header) = open_header(&path)?;
    header.mappable().map_err(|e| e.in_file(&path))?;
    let unlocked = unlock(&path, &file, &header, &key)?;
    if !unlocked.bound {
        // cryptsetup's open of an unbound key: exit 1.
        return Err(Error::usage(format!(
            "keyslot {} is unbound: it is not assigned to the data segment, so its key \
             cannot unlock the volume",
            unlocked.slot
        ))
        .because(Reason::UnboundKeyslot)
        .in_file(&path));
    }
    let cfg = MountConfig {
        header: path,
        payloads,
        mountpoint,
        name,
        readonly,
        foreground,
        fuse_options,
        payload_format: payload_format.map(|f| match f {
            PayloadFormat::Qcow2 => Format::Qcow2,
            PayloadFormat::Raw => Format::Raw,
        }),
        allow_backing,
        embedded_luks,
    };
    luksfuse::mount::run(&cfg, unlocked.key, header.segment())
}
