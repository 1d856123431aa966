//! Start-up checks that turn the kernel's terse refusals into plain
//! answers: which capabilities are missing, whether the interface exists,
//! and who holds an XDP attachment we could not take. The loader calls
//! them; they only read (`/proc`, `if_nametoindex`, `ip -j link`).

use std::ffi::CString;

/// Capabilities the sensor needs, with the kernel's numbers.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities missing from this process for loading and attaching
/// the XDP program and reading its perf buffers (CAP_SYS_ADMIN stands in
/// for CAP_BPF and CAP_PERFMON, as the kernel allows). Empty: all there.
pub fn missing_capabilities() -> Vec<&'static str> {
    missing_from(effective_capabilities())
}

fn missing_from(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !admin {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_PERFMON) && !admin {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// `CapEff` of this process (0 when it cannot be read: then everything is
/// reported missing, and the kernel has the last word anyway).
fn effective_capabilities() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// The interface's index, or `None` when no interface has that name.
pub fn interface_index(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Who holds the XDP attachment of `iface`, as far as can be told: the
/// program (id, name) from `ip -j -d link`, and the processes holding a
/// BPF link to it (from `/proc/*/fdinfo`).
pub fn xdp_holder(iface: &str) -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let prog = links.get(0)?.get("xdp")?.get("prog")?;
    let id = prog.get("id")?.as_u64()?;
    let name = prog.get("name").and_then(|n| n.as_str()).unwrap_or("?");
    let owners = link_owners(id);
    Some(if owners.is_empty() {
        format!("program {id} `{name}`")
    } else {
        format!("program {id} `{name}`, held by {}", owners.join(", "))
    })
}

/// `comm[pid]` of each process with a BPF link fd for program `prog_id`.
fn link_owners(prog_id: u64) -> Vec<String> {
    let wanted = format!("prog_id:\t{prog_id}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut owners = Vec::new();
    for entry in procs.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.contains("link_type:") && info.lines().any(|line| line == wanted)
            })
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            owners.push(format!("{}[{pid}]", comm.trim()));
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_named_and_sys_admin_stands_in() {
        let bit = |cap: u32| 1u64 << cap;
        assert_eq!(missing_from(0), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        assert_eq!(missing_from(bit(CAP_NET_ADMIN)), ["CAP_BPF", "CAP_PERFMON"]);
        assert!(missing_from(bit(CAP_BPF) | bit(CAP_NET_ADMIN) | bit(CAP_PERFMON)).is_empty());
        assert!(missing_from(bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN)).is_empty());
    }

    #[test]
    fn loopback_exists_and_nonsense_does_not() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("bad\0name"), None);
    }
}
