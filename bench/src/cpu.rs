//! CPU time of the driver itself (getrusage) and, when its pid is given, of the broker
//! (/proc/<pid>/stat), so a reader can see whether the driver or the broker ran out of CPU; and
//! the broker's resident memory (/proc/<pid>/status VmRSS) for long runs.

use anyhow::{bail, Context, Result};

/// User plus system CPU seconds this process has used so far.
pub fn self_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a live rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User plus system CPU seconds of process `pid` so far.
pub fn process_cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_s())
}

/// User plus system CPU seconds of all of `pids` so far (the nodes of a local cluster).
pub fn processes_cpu_s(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|p| process_cpu_s(*p)).sum()
}

/// Resident memory of process `pid` in bytes (VmRSS).
pub fn process_rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Summed resident memory of `pids` in bytes (the nodes of a local cluster).
pub fn processes_rss_bytes(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|p| process_rss_bytes(*p)).sum()
}

/// The `VmRSS:   123456 kB` line of a /proc/<pid>/status, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut fields = line.split_whitespace();
    let n: u64 = fields.next()?.parse().ok()?;
    let mult = match fields.next() {
        Some("kB") | None => 1024,
        Some("mB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(n * mult)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; the command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' in /proc stat line");
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so field 14 is index 11.
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("stat line has no field {}", i + 3))?
            .parse()
            .context("stat field is not a number")
    };
    Ok(get(11)? + get(12)?)
}

/// CPU used over a wall-clock interval, as cores busy on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub cores: f64,
}

impl CpuUse {
    pub fn between(cpu_start_s: f64, cpu_end_s: f64, wall_s: f64) -> CpuUse {
        let cpu_s = (cpu_end_s - cpu_start_s).max(0.0);
        CpuUse {
            cpu_s,
            wall_s,
            cores: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_name_parses() {
        let line = "1234 (my (odd) proc) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 300);
        assert!(parse_stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn vm_rss_parses_in_bytes() {
        let status = "Name:\tgregor\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
        // A kernel thread has no VmRSS line; our own process has one.
        assert!(process_rss_bytes(std::process::id()).unwrap() > 1 << 20);
        assert!(processes_rss_bytes(&[std::process::id(), std::process::id()]).is_ok());
    }

    #[test]
    fn own_cpu_is_readable() {
        let a = self_cpu_s();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(self_cpu_s() >= a);
        let me = process_cpu_s(std::process::id()).unwrap();
        assert!(me >= 0.0);
        let u = CpuUse::between(1.0, 3.0, 4.0);
        assert_eq!(u.cores, 0.5);
    }
}
