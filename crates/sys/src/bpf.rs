//! eBPF helpers (cgroup v2 device filter programs).
