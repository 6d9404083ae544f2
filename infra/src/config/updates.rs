//! The updates section: when a droplet may reboot for a security update, if ever.

use super::keys::Section;
use super::reader::Reader;

/// `maintenanceWindow`: a weekday (or every day) and a UTC time at which the first droplet of
/// each pool may reboot for a pending security update; the next ones follow one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// `Mon`..`Sun` as systemd writes them, or `None` for every day.
    pub weekday: Option<&'static str>,
    /// Hour, UTC.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
}

/// How long each droplet has before the next one may reboot: the drain and shutdown, a boot,
/// and the load balancer's passing checks, with room to spare.
pub const STAGGER_MINUTES: u32 = 15;

const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

impl MaintenanceWindow {
    /// Parses `sun 03:00` or `daily 03:00`.
    pub fn parse(text: &str) -> Result<MaintenanceWindow, String> {
        let bad = || format!("must look like \"sun 03:00\" or \"daily 03:00\" (UTC), got {text:?}");
        let (day, time) = text.trim().split_once(' ').ok_or_else(bad)?;
        let weekday = match day.to_ascii_lowercase().as_str() {
            "daily" => None,
            d => Some(
                WEEKDAYS
                    .iter()
                    .find(|(short, _)| d.starts_with(short))
                    .map(|(_, systemd)| *systemd)
                    .ok_or_else(bad)?,
            ),
        };
        let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
        let (hour, minute): (u32, u32) =
            (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(MaintenanceWindow {
            weekday,
            hour,
            minute,
        })
    }

    /// The systemd `OnCalendar` of droplet `index` (1-based) of a pool: the window's start,
    /// plus [`STAGGER_MINUTES`] per droplet before it, so no two reboot together.
    pub fn on_calendar(&self, index: u32) -> String {
        let minutes = self.hour * 60 + self.minute + (index.max(1) - 1) * STAGGER_MINUTES;
        let (days, minutes) = (minutes / (24 * 60), minutes % (24 * 60));
        let weekday = self.weekday.map(|w| {
            let at = WEEKDAYS.iter().position(|(_, s)| *s == w).unwrap_or(0) as u32;
            WEEKDAYS[((at + days) % 7) as usize].1
        });
        let time = format!("{:02}:{:02}:00", minutes / 60, minutes % 60);
        match weekday {
            Some(w) => format!("{w} *-*-* {time}"),
            None => format!("*-*-* {time}"),
        }
    }
}

/// `maintenanceWindow`, or none: updates install, and a reboot they need waits for a person.
pub(super) fn parse(r: &mut Reader) -> Option<MaintenanceWindow> {
    const KEY: &str = "maintenanceWindow";
    let r = r.enter(Section::Updates);
    let text = r.string(KEY).filter(|t| !t.trim().is_empty())?;
    match MaintenanceWindow::parse(&text) {
        Ok(window) => Some(window),
        Err(problem) => {
            r.err(KEY, problem);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn droplets_reboot_one_at_a_time_from_the_window_on() {
        let w = MaintenanceWindow::parse("sun 23:40").unwrap();
        assert_eq!(w.on_calendar(1), "Sun *-*-* 23:40:00");
        assert_eq!(w.on_calendar(2), "Sun *-*-* 23:55:00");
        assert_eq!(w.on_calendar(3), "Mon *-*-* 00:10:00");
        let daily = MaintenanceWindow::parse("daily 03:00").unwrap();
        assert_eq!(daily.on_calendar(2), "*-*-* 03:15:00");
        for bad in ["sunday", "sun 25:00", "someday 03:00", "sun 3"] {
            assert!(MaintenanceWindow::parse(bad).is_err(), "{bad}");
        }
    }
}
