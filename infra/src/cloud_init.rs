//! Renders the cloud-config that installs the app binary and runs it as a hardened systemd service.

/// The systemd unit name on every droplet.
pub const SERVICE_NAME: &str = "rustlb-app.service";
/// Where the binary is installed.
pub const BINARY_PATH: &str = "/usr/local/bin/rustlb-app";
/// The environment file the unit reads (root-only, it holds secrets).
pub const ENV_FILE: &str = "/etc/rustlb/app.env";
/// The CA file written for `sslmode=verify-full`.
pub const CA_FILE: &str = "/etc/rustlb/db-ca.crt";
/// Where the app spools request-log rows: systemd's `StateDirectory=rustlb`, the one place the
/// read-only system leaves writable for the service, kept across restarts.
pub const SPOOL_DIR: &str = "/var/lib/rustlb/spool";
/// The oneshot unit that reboots the droplet when an update asked for it.
pub const REBOOT_SERVICE: &str = "rustlb-reboot.service";
/// Its timer: the droplet's slot in the stack's maintenance window.
pub const REBOOT_TIMER: &str = "rustlb-reboot.timer";

/// unattended-upgrades' own settings: security pockets only, never a reboot of its own (a
/// reboot waits for the maintenance window's timer). `#clear` drops the image's list first.
const UNATTENDED_UPGRADES: &str = r#"// rustlb: security updates only; a reboot they need waits for the stack's maintenance window.
#clear Unattended-Upgrade::Allowed-Origins;
Unattended-Upgrade::Allowed-Origins {
        "${distro_id}:${distro_codename}-security";
        "${distro_id}ESMApps:${distro_codename}-apps-security";
        "${distro_id}ESM:${distro_codename}-infra-security";
};
Unattended-Upgrade::Automatic-Reboot "false";
"#;

/// apt's daily timers: refresh the lists and run unattended-upgrades every day.
const AUTO_UPGRADES: &str = r#"APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
"#;

/// The reboot unit: only when an update left `/var/run/reboot-required`. Stopping the app on
/// the way down is its SIGTERM, so it drains before the droplet goes.
const REBOOT_UNIT: &str = "[Unit]
Description=Reboot for an installed security update (rustlb maintenance window)
ConditionPathExists=/var/run/reboot-required

[Service]
Type=oneshot
ExecStart=/usr/bin/systemctl reboot
";

/// The timer of the reboot unit at `on_calendar` (systemd calendar syntax).
pub fn reboot_timer(on_calendar: &str) -> String {
    format!(
        "[Unit]
Description=rustlb maintenance window: reboot for a pending security update

[Timer]
OnCalendar={on_calendar}
Unit={REBOOT_SERVICE}

[Install]
WantedBy=timers.target
"
    )
}

/// Everything one droplet's cloud-config needs.
pub struct CloudInit<'a> {
    /// The app's settings on this droplet (`crate::deploy`), secrets included.
    pub settings: app::DeploySettings,
    /// HTTPS URL of the app binary.
    pub binary_url: &'a str,
    /// Expected sha256 of the binary; the download is refused on mismatch.
    pub binary_sha256: &'a str,
    /// HTTPS URL of the database CA certificate when the app verifies the database (`verify-full`).
    pub database_ca_url: Option<&'a str>,
    /// This droplet's reboot slot (systemd `OnCalendar`) in the maintenance window; none: a
    /// reboot an update needs waits for a person.
    pub reboot_at: Option<String>,
}

/// What systemd allows beyond the drain for a stop: in-flight requests (the app's grace,
/// 10 s by default) and the request-log flush, with room to spare. Past it, SIGKILL.
const STOP_MARGIN_SECONDS: u64 = 40;

/// What the droplet's own shutdown takes beyond the app's stop (other units, the power-off)
/// and the provider's polling for the droplet's "off" state.
const SHUTDOWN_MARGIN_SECONDS: u64 = 120;

/// The provider's `customTimeouts.delete` for a droplet. With `gracefulShutdown` it shuts the
/// droplet down and waits for it to be off within the delete timeout, 60 s by default
/// (terraform-provider-digitalocean v2.96.0 `resource_droplet.go`): shorter than a drain, so
/// every delete would time out. Whole minutes, as a Go duration.
pub fn droplet_delete_timeout(drain_seconds: u64) -> String {
    let seconds = drain_seconds + STOP_MARGIN_SECONDS + SHUTDOWN_MARGIN_SECONDS;
    format!("{}m", seconds.div_ceil(60))
}

/// The unit file: its own user, no new privileges, read-only system, restarted for ever, and
/// a stop that waits for the drain.
pub fn service_unit(drain_seconds: u64) -> String {
    let stop_timeout = drain_seconds + STOP_MARGIN_SECONDS;
    format!(
        "[Unit]
Description=rustlb REST API
Wants=network-online.target
After=network-online.target
# Never stop restarting: the default start limit (5 starts in 10 s) would leave the droplet
# dead until someone logs in.
StartLimitIntervalSec=0

[Service]
Type=simple
User=rustlb
Group=rustlb
EnvironmentFile={ENV_FILE}
ExecStart={BINARY_PATH}
Restart=always
# Back off from 2 s to 30 s between restarts (RestartSteps needs systemd 254; Ubuntu 24.04 has 255).
RestartSec=2
RestartSteps=5
RestartMaxDelaySec=30
# SIGTERM starts the drain: /health fails at once while requests are still served, so the load
# balancer stops choosing this droplet before the app stops accepting.
KillSignal=SIGTERM
TimeoutStopSec={stop_timeout}
NoNewPrivileges=true
ProtectSystem=strict
# /var/lib/rustlb, owned by the service user: the request log's spool (see SPOOL_DIR).
StateDirectory=rustlb
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
RestrictSUIDSGID=true
LockPersonality=true
CapabilityBoundingSet=
# The metadata service hands out user-data, which holds this service's secrets.
IPAddressDeny=169.254.169.254/32
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"
    )
}

/// The content of the file a cloud-config writes to `path`, read back from the document (for
/// checks of what a droplet will get).
pub fn written_file(cloud_config: &str, path: &str) -> Option<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(cloud_config).ok()?;
    doc["write_files"]
        .as_sequence()?
        .iter()
        .find(|f| f["path"] == path)?["content"]
        .as_str()
        .map(str::to_owned)
}

/// systemd EnvironmentFile value: double-quoted, with `\` and `"` escaped.
fn env_value(v: &str) -> String {
    let escaped: String = v
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .flat_map(|c| match c {
            '\\' | '"' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// One `write_files` entry, root's.
fn write_file(path: &str, permissions: &str, content: &str) -> String {
    format!(
        "  - path: {path}\n    owner: root:root\n    permissions: '{permissions}'\n    content: |\n{}\n",
        indent(content, 6)
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl CloudInit<'_> {
    /// The `APP__*` environment of the service.
    pub fn environment(&self) -> String {
        self.settings
            .to_env()
            .into_iter()
            .map(|(name, value)| format!("{name}={}\n", env_value(&value)))
            .collect()
    }

    /// The whole `#cloud-config` document.
    pub fn render(&self) -> String {
        // The CA must be a certificate before the app is told to trust it.
        let fetch_ca = match self.database_ca_url {
            Some(ca_url) => format!(
                "curl -fsSL --retry 10 --retry-connrefused -o {CA_FILE}.download '{ca_url}'; \
grep -q 'BEGIN CERTIFICATE' {CA_FILE}.download; \
install -o root -g root -m 0644 {CA_FILE}.download {CA_FILE}; rm -f {CA_FILE}.download; "
            ),
            None => String::new(),
        };
        // The binary is checked against the pinned sha256 before it replaces anything.
        let install = format!(
            "set -eu; {fetch_ca}curl -fsSL --retry 10 --retry-connrefused -o {BINARY_PATH}.download '{url}'; \
echo '{sha}  {BINARY_PATH}.download' | sha256sum -c -; \
install -o root -g root -m 0755 {BINARY_PATH}.download {BINARY_PATH}; rm -f {BINARY_PATH}.download; \
systemctl daemon-reload; systemctl enable --now {SERVICE_NAME}{timer}",
            url = self.binary_url,
            sha = self.binary_sha256,
            timer = if self.reboot_at.is_some() {
                format!("; systemctl enable --now {REBOOT_TIMER}")
            } else {
                String::new()
            },
        );
        let updates = [
            write_file("/etc/apt/apt.conf.d/20auto-upgrades", "0644", AUTO_UPGRADES),
            write_file(
                "/etc/apt/apt.conf.d/52rustlb-unattended-upgrades",
                "0644",
                UNATTENDED_UPGRADES,
            ),
        ]
        .concat();
        let reboot_files = match &self.reboot_at {
            Some(at) => format!(
                "{}{}",
                write_file(
                    &format!("/etc/systemd/system/{REBOOT_SERVICE}"),
                    "0644",
                    REBOOT_UNIT
                ),
                write_file(
                    &format!("/etc/systemd/system/{REBOOT_TIMER}"),
                    "0644",
                    &reboot_timer(at)
                ),
            ),
            None => String::new(),
        };
        format!(
            "#cloud-config
# rustlb app {sha}
users:
  - name: rustlb
    system: true
    shell: /usr/sbin/nologin
    no_create_home: true
write_files:
  - path: {ENV_FILE}
    owner: root:root
    permissions: '0600'
    content: |
{env}
  - path: /etc/systemd/system/{SERVICE_NAME}
    owner: root:root
    permissions: '0644'
    content: |
{unit}
{updates}{reboot_files}runcmd:
  - [sh, -c, {install}]
",
            sha = self.binary_sha256,
            env = indent(&self.environment(), 6),
            unit = indent(&service_unit(self.settings.drain_seconds.unwrap_or(0)), 6),
            install = serde_json::to_string(&install).expect("a string serialises"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::APP_PORT;

    #[test]
    fn environment_values_cannot_break_out_of_their_line() {
        let ci = CloudInit {
            settings: app::DeploySettings {
                environment: app::Environment::Production,
                host: std::net::Ipv4Addr::UNSPECIFIED.into(),
                port: APP_PORT,
                server_id: "a\"b".into(),
                api_key: Some("k\\ey".into()),
                database_url: "postgresql://u:p@h:1/d?sslmode=require\nEVIL=1".into(),
                owner_url: Some("postgresql://o:p@h:2/d?sslmode=require".into()),
                statement_cache: false,
                run_migrations: true,
                ca_file: None,
                drain_seconds: Some(95),
                health_timeout_ms: None,
                trusted_proxy_hops: None,
                retention: app::LogRetention::default(),
                spool_dir: None,
            },
            binary_url: "https://x/app",
            binary_sha256: "00",
            database_ca_url: None,
            reboot_at: None,
        };
        let env = ci.environment();
        assert!(
            env.contains("APP__APPLICATION__SERVER_ID=\"a\\\"b\"\n"),
            "{env}"
        );
        assert!(
            env.contains("APP__APPLICATION__API_KEY=\"k\\\\ey\"\n"),
            "{env}"
        );
        assert!(!env.lines().any(|l| l.starts_with("EVIL")), "{env}");
    }
}
