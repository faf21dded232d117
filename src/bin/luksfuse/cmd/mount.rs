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
        partitions,
        allow_discards,
        header: path,
        mut paths,
    } = a;
    let mountpoint = paths.pop().expect("clap requires a mountpoint");
    // `mount IMAGE MOUNTPOINT`: the image holds its header: a LUKS image with its data after
    // the header, or a qcow2 image with QEMU's own LUKS encryption.
    let single = paths.is_empty();
    let embedded_luks = single && super::embedded_header(&path)?.is_some();
    if embedded_luks && payload_format == Some(PayloadFormat::Raw) {
        return Err(Error::usage(
            "--payload-format raw does not fit a qcow2 image with its own encryption",
        ));
    }
    let payloads = if single { vec![path.clone()] } else { paths };
    let mut fuse_options: Vec<String> = options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    // `-o ro` / `-o rw` mean what --readonly means (as for mount(8) and fstab).
    let readonly = readonly || fuse_options.iter().any(|o| o == "ro");
    fuse_options.retain(|o| o != "ro" && o != "rw");
    // `-o discard` (mount(8)'s name) and `-o allow-discards` (cryptsetup's) mean --allow-discards.
    let discard_opt = |o: &String| o == "discard" || o == "allow-discards";
    let mut allow_discards = allow_discards || fuse_options.iter().any(discard_opt);
    fuse_options.retain(|o| !discard_opt(o));
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
    if !allow_discards && header.persistent_allow_discards() {
        // As cryptsetup's activation: the header's persistent flags add to the command line's.
        log::info!("the header's persistent allow-discards flag turns discards on");
        allow_discards = true;
    }
    if !embedded_luks {
        // (An encrypted qcow2 image keeps its header in clusters no guest write reaches.)
        for p in &payloads {
            luksfuse::mount::check_header_outside_data(&path, p, &header)?;
        }
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
        partitions,
        embedded_luks,
        allow_discards,
    };
    luksfuse::mount::run(&cfg, unlocked.key, header.segment())
}
