#![no_std]
// The kernel program is the `sensor-xdp` binary (src/main.rs), built for the
// bpf target by sensor/build.rs. This empty library only lets the userspace
// crate declare a build-dependency on it, so cargo rebuilds when it changes.
