//! Tests against real peers (qemu-img, qemu-io).
