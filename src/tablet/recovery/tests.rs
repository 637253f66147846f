use super::*;

fn marker(kind: MarkerKind, backup: &str) -> Marker {
    Marker {
        backup: backup.into(),
        kind,
    }
}

#[test]
fn plan_recovery_covers_every_combination() {
    use MarkerKind::*;
    let at_start = marker(AtStart, "b1");
    let in_place = marker(InPlace, "b1");
    let nameless = marker(AtStart, "");
    let nameless_in_place = marker(InPlace, "");
    let redo = || Recovery::Redo("b1".into());
    let refuse = |r: &Recovery| matches!(r, Recovery::Refuse(_));
    // Every combination of (marker, data, data.before-restore, primary).
    let markers: [Option<&Marker>; 5] = [
        None,
        Some(&at_start),
        Some(&in_place),
        Some(&nameless),
        Some(&nameless_in_place),
    ];
    let mut seen = 0;
    for m in markers {
        for data in [false, true] {
            for before in [false, true] {
                for primary in [false, true] {
                    seen += 1;
                    let got = plan_recovery(m, data, before, primary);
                    let want = match (m.map(|m| (m.kind, m.backup.is_empty())), data, before) {
                        (None, _, false) => Some(Recovery::Nothing),
                        (None, true, true) => Some(Recovery::DiscardOld),
                        (None, false, true) => Some(Recovery::RollBack),
                        // Old data kept: it always comes back, primary or not.
                        (Some(_), _, true) => Some(Recovery::RollBack),
                        // In place, killed before the first rename: data intact.
                        (Some((InPlace, _)), true, false) => Some(Recovery::DropMarker),
                        // Nothing to go back to and no backup named: refuse.
                        (Some((_, true)), _, false) => None,
                        // A primary is never restored over.
                        (Some(_), _, false) if primary => None,
                        (Some(_), _, false) => Some(redo()),
                    };
                    match want {
                        Some(w) => assert_eq!(
                            got, w,
                            "marker {m:?}, data {data}, before {before}, primary {primary}"
                        ),
                        None => assert!(
                            refuse(&got),
                            "marker {m:?}, data {data}, before {before}, primary {primary}: {got:?}"
                        ),
                    }
                    // Never an empty data dir while a marker or old data exists: every
                    // such plan either puts data back, restores, or refuses.
                    if (m.is_some() || before) && !data {
                        assert!(
                            matches!(got, Recovery::RollBack | Recovery::Redo(_)) || refuse(&got),
                            "{got:?}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(seen, 40);
}

#[test]
fn markers_round_trip_and_old_markers_are_restores_at_start() {
    for kind in [MarkerKind::AtStart, MarkerKind::InPlace] {
        let m = marker(kind, "2024-01-01.000000.zone1-0000000001");
        assert_eq!(Marker::parse(&m.render()), m);
    }
    assert_eq!(Marker::parse("b1\n"), marker(MarkerKind::AtStart, "b1"));
    assert_eq!(Marker::parse(""), marker(MarkerKind::AtStart, ""));
}

#[test]
fn roll_back_puts_the_old_data_back_and_keeps_the_restored_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    fs::create_dir_all(d.join(BEFORE_RESTORE)).unwrap();
    fs::write(d.join(BEFORE_RESTORE).join("old"), b"old").unwrap();
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("new"), b"new").unwrap();
    write_marker(d, &marker(MarkerKind::InPlace, "b1")).unwrap();
    roll_back(d, &data).unwrap();
    assert!(data.join("old").exists());
    assert!(d.join(FAILED_RESTORE).join("new").exists());
    assert!(!d.join(BEFORE_RESTORE).exists());
    assert!(read_marker(d).unwrap().is_none());
    // Between the renames (no data at all): the old data comes back too.
    fs::rename(&data, d.join(BEFORE_RESTORE)).unwrap();
    write_marker(d, &marker(MarkerKind::InPlace, "b1")).unwrap();
    roll_back(d, &data).unwrap();
    assert!(data.join("old").exists());
}
