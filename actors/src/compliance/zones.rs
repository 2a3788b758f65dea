//! The time zones a number may be in, from its E.164 digits alone: the country calling
//! code, and within NANP (+1), China, the UK and Australia the area code where it settles
//! the zone. Where it does not (a country or area that spans zones, an area code not in the
//! table), every candidate zone is returned and the calling rules apply the strictest
//! reading: the intersection of their windows.
//!
//! The tables hold what is certain; a number they do not know gives no zone (the campaign's
//! default applies, or the contact is held back as `no_timezone`).

use chrono_tz::Tz;

/// Country calling codes (prefix-free) and their zones.
const COUNTRIES: &[(&str, &[&str])] = &[
    ("1", &[]), // NANP: by area code below
    ("7", &["Europe/Kaliningrad", "Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Asia/Vladivostok"]),
    ("20", &["Africa/Cairo"]),
    ("27", &["Africa/Johannesburg"]),
    ("30", &["Europe/Athens"]),
    ("31", &["Europe/Amsterdam"]),
    ("32", &["Europe/Brussels"]),
    ("33", &["Europe/Paris"]),
    ("34", &["Europe/Madrid", "Atlantic/Canary"]),
    ("36", &["Europe/Budapest"]),
    ("39", &["Europe/Rome"]),
    ("40", &["Europe/Bucharest"]),
    ("41", &["Europe/Zurich"]),
    ("43", &["Europe/Vienna"]),
    ("44", &["Europe/London"]),
    ("45", &["Europe/Copenhagen"]),
    ("46", &["Europe/Stockholm"]),
    ("47", &["Europe/Oslo"]),
    ("48", &["Europe/Warsaw"]),
    ("49", &["Europe/Berlin"]),
    ("51", &["America/Lima"]),
    ("52", &["America/Tijuana", "America/Hermosillo", "America/Mexico_City", "America/Cancun"]),
    ("54", &["America/Argentina/Buenos_Aires"]),
    ("55", &["America/Manaus", "America/Sao_Paulo", "America/Noronha"]),
    ("56", &["America/Santiago"]),
    ("57", &["America/Bogota"]),
    ("60", &["Asia/Kuala_Lumpur"]),
    ("61", &["Australia/Perth", "Australia/Adelaide", "Australia/Brisbane", "Australia/Sydney"]),
    ("62", &["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"]),
    ("63", &["Asia/Manila"]),
    ("64", &["Pacific/Auckland"]),
    ("65", &["Asia/Singapore"]),
    ("66", &["Asia/Bangkok"]),
    ("81", &["Asia/Tokyo"]),
    ("82", &["Asia/Seoul"]),
    ("84", &["Asia/Ho_Chi_Minh"]),
    ("86", &["Asia/Shanghai"]),
    ("90", &["Europe/Istanbul"]),
    ("91", &["Asia/Kolkata"]),
    ("92", &["Asia/Karachi"]),
    ("351", &["Europe/Lisbon", "Atlantic/Azores"]),
    ("352", &["Europe/Luxembourg"]),
    ("353", &["Europe/Dublin"]),
    ("358", &["Europe/Helsinki"]),
    ("420", &["Europe/Prague"]),
    ("852", &["Asia/Hong_Kong"]),
    ("853", &["Asia/Macau"]),
    ("886", &["Asia/Taipei"]),
    ("971", &["Asia/Dubai"]),
    ("972", &["Asia/Jerusalem"]),
    ("966", &["Asia/Riyadh"]),
];

const EASTERN: &str = "America/New_York";
const CENTRAL: &str = "America/Chicago";
const MOUNTAIN: &str = "America/Denver";
const ARIZONA: &str = "America/Phoenix";
const PACIFIC: &str = "America/Los_Angeles";

/// NANP area codes that lie wholly in one zone (large metro codes; split areas are left
/// out on purpose and get every candidate).
const NANP: &[(&str, &[u16])] = &[
    (
        EASTERN,
        &[
            201, 202, 203, 207, 212, 215, 216, 267, 301, 302, 305, 321, 347, 401, 404, 407, 410, 412, 413, 434, 440,
            443, 470, 478, 484, 508, 516, 518, 540, 551, 561, 571, 585, 603, 607, 609, 610, 614, 617, 631, 646, 678,
            703, 704, 706, 716, 717, 718, 727, 732, 757, 770, 772, 774, 781, 786, 802, 803, 804, 813, 828, 843, 845,
            856, 857, 860, 862, 863, 864, 904, 908, 910, 914, 917, 919, 929, 941, 954, 973, 978, 980, 984,
        ],
    ),
    (
        CENTRAL,
        &[
            205, 210, 214, 217, 224, 225, 251, 254, 256, 262, 281, 309, 312, 314, 316, 318, 319, 320, 334, 337, 346,
            361, 405, 409, 414, 417, 430, 469, 479, 501, 504, 507, 512, 515, 563, 573, 601, 608, 612, 618, 630, 636,
            651, 662, 682, 708, 713, 737, 763, 773, 779, 815, 816, 817, 830, 832, 847, 870, 872, 901, 903, 913, 918,
            920, 936, 940, 952, 956, 972, 979,
        ],
    ),
    (MOUNTAIN, &[303, 307, 385, 406, 435, 505, 575, 719, 720, 801, 915, 970]),
    (ARIZONA, &[480, 520, 602, 623, 928]),
    (
        PACIFIC,
        &[
            206, 209, 213, 253, 310, 323, 408, 415, 424, 425, 442, 503, 509, 510, 530, 559, 562, 619, 626, 650, 657,
            661, 669, 702, 707, 714, 725, 747, 760, 775, 805, 818, 831, 858, 909, 916, 925, 949, 951, 971,
        ],
    ),
    ("America/Anchorage", &[907]),
    ("Pacific/Honolulu", &[808]),
    ("America/Toronto", &[416, 437, 647, 905, 289, 613, 343, 514, 438, 450, 579]),
    ("America/Vancouver", &[604, 778, 236, 250]),
];

/// A NANP number whose area code is not in the table: every zone of the US and Canada.
const NANP_ALL: &[&str] =
    &["America/Halifax", EASTERN, CENTRAL, MOUNTAIN, ARIZONA, PACIFIC, "America/Anchorage", "Pacific/Honolulu"];

fn parse(names: &[&str]) -> Vec<Tz> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// Florida's area codes (its calling rules differ: 08:00-20:00, 3 calls in 24 h).
const FLORIDA: &[u16] = &[
    239, 305, 321, 324, 352, 386, 407, 448, 561, 645, 656, 689, 727, 728, 754, 772, 786, 813, 850, 863, 904, 941, 954,
];

/// The ISO 3166-2 region of a number where a regional rule depends on it (today: the US
/// states with overrides in the built-in profiles).
pub fn region_for_number(e164: &str) -> Option<&'static str> {
    let area: u16 = e164.strip_prefix("+1")?.get(..3)?.parse().ok()?;
    FLORIDA.contains(&area).then_some("US-FL")
}

/// The candidate zones of an E.164 number (`+` and digits); empty when unknown.
pub fn zones_for_number(e164: &str) -> Vec<Tz> {
    let Some(digits) = e164.strip_prefix('+').filter(|d| d.bytes().all(|b| b.is_ascii_digit())) else {
        return Vec::new();
    };
    let Some((cc, zones)) = (1..=3)
        .filter_map(|n| digits.get(..n))
        .find_map(|p| COUNTRIES.iter().find(|(c, _)| *c == p).map(|(c, z)| (*c, *z)))
    else {
        return Vec::new();
    };
    let national = &digits[cc.len()..];
    match cc {
        "1" => {
            let area: Option<u16> = national.get(..3).and_then(|a| a.parse().ok());
            match area.and_then(|a| NANP.iter().find(|(_, codes)| codes.contains(&a))) {
                Some((zone, _)) => parse(&[zone]),
                None => parse(NANP_ALL),
            }
        }
        // Xinjiang's area codes (09xx) keep local time two hours behind Beijing in daily
        // life; both readings apply.
        "86" if national.starts_with("99") => parse(&["Asia/Shanghai", "Asia/Urumqi"]),
        // Australia by area code: 2 NSW/ACT, 3 VIC/TAS, 7 QLD, 8 SA/WA/NT (several zones).
        "61" => match national.as_bytes().first() {
            Some(b'2' | b'3') => parse(&["Australia/Sydney"]),
            Some(b'7') => parse(&["Australia/Brisbane"]),
            Some(b'8') => parse(&["Australia/Adelaide", "Australia/Perth", "Australia/Darwin"]),
            // Mobiles (4) and the rest: anywhere in the country.
            _ => parse(zones),
        },
        _ => parse(zones),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Chicago, Los_Angeles, New_York, Phoenix};

    #[test]
    fn every_table_entry_is_a_real_zone() {
        let all =
            COUNTRIES.iter().flat_map(|(_, z)| z.iter()).chain(NANP.iter().map(|(z, _)| z)).chain(NANP_ALL.iter());
        for z in all {
            assert!(z.parse::<Tz>().is_ok(), "{z}");
        }
        let mut codes: Vec<u16> = NANP.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "an area code in two zones");
    }

    #[test]
    fn numbers_get_their_zones_or_all_candidates() {
        assert_eq!(zones_for_number("+12125550123"), vec![New_York]);
        assert_eq!(zones_for_number("+13125550123"), vec![Chicago]);
        assert_eq!(zones_for_number("+14155550123"), vec![Los_Angeles]);
        assert_eq!(zones_for_number("+16025550123"), vec![Phoenix]);
        // 850 (Florida's panhandle) spans two zones: every NANP candidate.
        assert_eq!(zones_for_number("+18505550123").len(), NANP_ALL.len());
        assert_eq!(zones_for_number("+8613800138000"), vec![chrono_tz::Asia::Shanghai]);
        assert_eq!(zones_for_number("+869915550123").len(), 2, "Urumqi");
        assert_eq!(zones_for_number("+442071234567"), vec![chrono_tz::Europe::London]);
        assert_eq!(zones_for_number("+61298765432"), vec![chrono_tz::Australia::Sydney]);
        assert_eq!(zones_for_number("+61412345678").len(), 4, "an Australian mobile");
        assert!(zones_for_number("+999123").is_empty());
        assert!(zones_for_number("12125550123").is_empty(), "not E.164");
        assert_eq!(region_for_number("+13055550123"), Some("US-FL"));
        assert_eq!(region_for_number("+12125550123"), None);
        assert_eq!(region_for_number("+443055550123"), None);
    }
}
