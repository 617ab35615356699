//! Measures the current process from `/proc`: memory, CPU time, descriptors, threads and
//! direct children (zombies counted apart).

use mimo_proto::v1::ProcessStats;
use procfs::process::{LimitValue, Process};

/// Returns the current process's resources; fields that cannot be read are left at zero.
pub fn process_stats() -> ProcessStats {
    let mut stats = ProcessStats {
        pid: std::process::id(),
        ..ProcessStats::default()
    };
    let Ok(myself) = Process::myself() else {
        return stats;
    };
    if let Ok(stat) = myself.stat() {
        stats.resident_memory_bytes = stat.rss * procfs::page_size();
        stats.virtual_memory_bytes = stat.vsize;
        stats.cpu_seconds = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
        stats.threads = u32::try_from(stat.num_threads).unwrap_or(0);
    }
    if let Ok(count) = myself.fd_count() {
        stats.open_fds = u32::try_from(count).unwrap_or(u32::MAX);
    }
    if let Ok(limits) = myself.limits() {
        stats.max_fds = match limits.max_open_files.soft_limit {
            LimitValue::Value(value) => value,
            LimitValue::Unlimited => u64::MAX,
        };
    }
    let (children, zombies) = count_children(myself.pid);
    stats.child_processes = children;
    stats.zombie_children = zombies;
    stats
}

/// Counts the direct children of `pid` and, among them, the zombies.
fn count_children(pid: i32) -> (u32, u32) {
    let Ok(processes) = procfs::process::all_processes() else {
        return (0, 0);
    };
    let mut children = 0;
    let mut zombies = 0;
    for stat in processes
        .flatten()
        .filter_map(|process| process.stat().ok())
    {
        if stat.ppid == pid {
            children += 1;
            if stat.state == 'Z' {
                zombies += 1;
            }
        }
    }
    (children, zombies)
}

/// Returns this machine's host name, or "localhost" when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_spawned_child_and_its_zombie() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        // `true` exits at once; until it is reaped it is a zombie child of this process.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = Process::new(pid).and_then(|p| p.stat()).map(|s| s.state);
            if matches!(state, Ok('Z')) || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::yield_now();
        }
        let stats = process_stats();
        assert!(stats.child_processes >= 1, "{stats:?}");
        assert!(stats.zombie_children >= 1, "{stats:?}");
        assert!(stats.resident_memory_bytes > 0 && stats.open_fds > 0 && stats.threads > 0);
        child.wait().expect("reap");
    }
}
