//! Standard MOs: realistic MOData documents (Appendix E GET results, a DMAcc bootstrap, DMDAC checks, FUMO), round trips.

use std::collections::BTreeMap;

use omadm_proto::mo::{
    AccessControlEntry, AccessRights, BearerType, DelegationAccessControl, DevInfo, DeviceIdKind, DmAccount,
    FirmwareUpdate, FumoOperation, FumoResultCode, FumoState, GcmPush, ManagementAuthority, ManagementObject, MoError,
    NotificationAuth, NotificationAuthType, Operation, Permission, Push, RoamingStatus, SessionInfo, permits,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The dmmo+json part a device sends for `GET urn:oma:mo:oma-dm-devinfo:1.2//`,
/// in the layout of Appendix E.
fn devinfo_get_result() -> Value {
    json!({
        "DDF": "http://www.vendor.com/DDF/oma-dm-devinfo1.2.ddf",
        "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//",
        "MOData": {
            "DevID": "IMEI:493005100592800",
            "Man": "Example Devices",
            "Mod": "EX-200",
            "DmV": "2.0",
            "Lang": "en-US",
            "DevType": "phone",
            "OEM": "Example OEM",
            "FwV": "R12.0.1",
            "SwV": "5.1.1",
            "HwV": "rev B",
            "Ext": {"BatteryLevel": 87, "Vendor": {"Flavor": "eu"}}
        }
    })
}

fn devinfo() -> DevInfo {
    let mut ext = serde_json::Map::new();
    ext.insert("BatteryLevel".into(), json!(87));
    ext.insert("Vendor".into(), json!({"Flavor": "eu"}));
    DevInfo {
        device_id: "IMEI:493005100592800".into(),
        manufacturer: "Example Devices".into(),
        model: "EX-200".into(),
        dm_client_version: "2.0".into(),
        language: "en-US".into(),
        device_type: "phone".into(),
        oem: "Example OEM".into(),
        firmware_version: "R12.0.1".into(),
        software_version: "5.1.1".into(),
        hardware_version: "rev B".into(),
        bearer: None,
        extensions: Some(ext),
    }
}

#[test]
fn devinfo_get_result_like_appendix_e() {
    let document = devinfo_get_result();
    let parsed = DevInfo::from_dmmo_document(&document).unwrap();
    assert_eq!(parsed, devinfo());
    assert_eq!(parsed.device_id_kind(), DeviceIdKind::Imei);
    assert_eq!(parsed.to_mo_data(), document["MOData"]);
    assert_eq!(DevInfo::MOID, "urn:oma:mo:oma-dm-devinfo:1.2");
}

#[test]
fn devinfo_wrapped_in_its_root_name_and_with_lenient_leaves() {
    let mo_data = json!({"DevInfo": {
        "DevID": "ESN:8034AB2F", "Man": "M", "Mod": 200, "DmV": 2.0, "Lang": "sv", "DevType": "modem",
        "OEM": "O", "FwV": 12, "SwV": "1", "HwV": "A", "Bearer": {"CDMA": {}}, "Unknown": "ignored"
    }});
    let parsed = DevInfo::from_mo_data(&mo_data).unwrap();
    assert_eq!(
        (parsed.model.as_str(), parsed.dm_client_version.as_str(), parsed.firmware_version.as_str()),
        ("200", "2.0", "12")
    );
    assert_eq!(parsed.device_id_kind(), DeviceIdKind::Esn);
    assert_eq!(parsed.bearer.as_ref().map(|bearer| bearer.contains_key("CDMA")), Some(true));
}

#[test]
fn partial_devinfo_like_a_leaf_get_is_not_a_whole_instance() {
    // Appendix E's GET of `//DevID` answers {"DevID": ...}: a part, not an instance.
    let leaf_only = json!({"DevID": "IMEI:493005100592800"});
    assert_eq!(DevInfo::from_mo_data(&leaf_only), Err(MoError::MissingNode { path: "DevInfo/Man".into() }));
}

#[test]
fn document_for_another_moid_is_rejected() {
    let mut document = devinfo_get_result();
    document["MOID"] = json!("urn:oma:mo:oma-dm-devinfo:1.1");
    assert_eq!(
        DevInfo::from_dmmo_document(&document),
        Err(MoError::MoidMismatch { expected: DevInfo::MOID, found: "urn:oma:mo:oma-dm-devinfo:1.1".into() })
    );
    assert_eq!(DevInfo::from_dmmo_document(&json!({"MOID": DevInfo::MOID})), Err(MoError::MissingMoData));
}

#[test]
fn sessioninfo_exactly_as_appendix_e_sends_it() {
    let part = json!({
        "DDF": "http://www.vendor.com/DDF/oma-sessioninfomo1.0.ddf",
        "ClientURI": "urn:oma:mo:oma-sessioninfomo:1.0//",
        "MOData": {"SessionInfoMO": {"CBT": 1, "ROAMING": 0}}
    });
    let session = SessionInfo::from_dmmo_document(&part).unwrap();
    assert_eq!(session, SessionInfo { bearer_type: BearerType::Mobile, roaming: RoamingStatus::NotRoaming });
    assert_eq!(session.to_mo_data(), json!({"CBT": 1, "ROAMING": 0}));
}

/// A bootstrap document (docs/protocol-decisions.md "Other gaps"): DMAcc as dmmo+json with
/// ServerID, Name, Permissions, AuthNoti and Push/GCM.
fn bootstrap_document() -> Value {
    json!({
        "DDF": "https://dm.example.com/ddf/oma-dm-dmacc-2.0.ddf",
        "MOID": "urn:oma:mo:oma-dm-dmacc:2.0",
        "MIID": "dms1",
        "MOData": {
            "ServerID": "dms1.example.com",
            "Name": "Example Device Management",
            "Permissions": {
                "devinfo": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.2"},
                "fumo": {"MOID": "urn:oma:mo:oma-fumo:1.0"},
                "dmdac": {"MOID": "urn:oma:mo:oma-dm-dmdac:1.0"}
            },
            "AuthNoti": {"AuthType": "0", "AuthSecret": "c2VjcmV0LWZvci1kbXMx"},
            "Push": {
                "GCM": {
                    "SenderID": "481516234200",
                    "RegURL": "https://dm.example.com/gcm/register",
                    "UnRegURL": "https://dm.example.com/gcm/unregister",
                    "RegParams": "tenant=acme&region=eu"
                },
                "Ext": {"Vendor": {"Priority": "high"}},
                "MQTT": {"Broker": "mqtts://push.example.com"}
            }
        }
    })
}

#[test]
fn dmacc_bootstrap_document() {
    let account = DmAccount::from_dmmo_document(&bootstrap_document()).unwrap();
    assert_eq!(account.server_id, "dms1.example.com");
    assert_eq!(account.name, "Example Device Management");
    assert_eq!(account.permissions.len(), 3);
    assert_eq!(account.permissions.get("fumo"), Some(&Permission::new("urn:oma:mo:oma-fumo:1.0")));
    assert!(account.permits_moid("urn:oma:mo:oma-dm-devinfo:1.2"));
    assert!(!account.permits_moid("urn:oma:mo:oma-scomo:1.0"));
    assert_eq!(account.check_bootstrap(), Ok(()));
    let auth = account.notification_auth.as_ref().unwrap();
    assert_eq!(auth.auth_type, NotificationAuthType::Sha256Digest);
    assert_eq!(auth.secret, "c2VjcmV0LWZvci1kbXMx");
    let push = account.push.as_ref().unwrap();
    let gcm = push.gcm.as_ref().unwrap();
    assert_eq!(gcm.sender_id, "481516234200");
    assert_eq!(
        gcm.registration_body("APA91bHun4MxP5egoKMwt2KZFBaFUH"),
        "RegId=APA91bHun4MxP5egoKMwt2KZFBaFUH&tenant=acme&region=eu"
    );
    assert_eq!(push.other_mechanisms.get("MQTT"), Some(&json!({"Broker": "mqtts://push.example.com"})));
    assert!(push.extensions.is_some());

    // Written back, the only change is AuthType as a JSON number (its DDF type).
    let mut expected = bootstrap_document();
    expected["MOData"]["AuthNoti"]["AuthType"] = json!(0);
    assert_eq!(account.to_mo_data(), expected["MOData"]);
    let document = account.to_dmmo_document("dms1");
    assert_eq!((document["MOID"].as_str(), document["MIID"].as_str()), (Some(DmAccount::MOID), Some("dms1")));
}

#[test]
fn dmacc_as_a_client_exposes_it_has_no_permissions() {
    let mut exposed = bootstrap_document()["MOData"].clone();
    exposed.as_object_mut().unwrap().remove("Permissions");
    let account = DmAccount::from_mo_data(&exposed).unwrap();
    assert!(account.permissions.is_empty());
    assert_eq!(account.check_bootstrap(), Err(MoError::MissingNode { path: "DMAcc/Permissions/<x>".into() }));
    assert!(account.to_mo_data().get("Permissions").is_none());
}

#[test]
fn dmacc_wildcard_permission_and_gcm_without_reg_params() {
    let mo_data = json!({
        "ServerID": "s", "Name": "S", "Permissions": {"all": {"MOID": "*"}},
        "Push": {"GCM": {"SenderID": "1", "RegURL": "https://r", "UnRegURL": "https://u"}}
    });
    let account = DmAccount::from_mo_data(&mo_data).unwrap();
    assert!(account.permits_moid("urn:oma:mo:anything:9.9"));
    let gcm = account.push.as_ref().and_then(|push| push.gcm.as_ref()).unwrap();
    assert_eq!(gcm.registration_parameters, None);
    // Strict in what we emit: the required RegParams node is written, empty.
    assert_eq!(account.to_mo_data()["Push"]["GCM"]["RegParams"], json!(""));
    let missing_reg_url = json!({"ServerID": "s", "Name": "S", "Push": {"GCM": {"SenderID": "1", "UnRegURL": "u"}}});
    assert_eq!(
        DmAccount::from_mo_data(&missing_reg_url),
        Err(MoError::MissingNode { path: "DMAcc/Push/GCM/RegURL".into() })
    );
    let missing_secret = json!({"ServerID": "s", "Name": "S", "AuthNoti": {"AuthType": 0}});
    assert_eq!(
        DmAccount::from_mo_data(&missing_secret),
        Err(MoError::MissingNode { path: "DMAcc/AuthNoti/AuthSecret".into() })
    );
}

fn fumo_access_control() -> Result<DelegationAccessControl, MoError> {
    DelegationAccessControl::from_mo_data(&json!({
        "MOID": "urn:oma:mo:oma-fumo:1.0",
        "1": {"MIID": "fw", "MAID": "serverid:dms1.example.com", "AccessRights": 15},
        "2": {"MIID": "fw", "MAID": "serverid:dms2.example.com", "AccessRights": "1"},
        "3": {"MIID": "fw", "MAID": "*", "AccessRights": 4},
        "4": {"MIID": "modem", "MAID": "appid:com.example.updater", "AccessRights": 3}
    }))
}

#[test]
fn dmdac_instance_reads_and_writes_its_flattened_form() {
    let access = fumo_access_control().unwrap();
    assert_eq!(access.moid, "urn:oma:mo:oma-fumo:1.0");
    assert_eq!(access.entries.len(), 4);
    assert_eq!(
        access.entries.get("4"),
        Some(&AccessControlEntry {
            miid: "modem".into(),
            authority: ManagementAuthority::Application("com.example.updater".into()),
            rights: AccessRights::READ | AccessRights::WRITE,
        })
    );
    let written = access.to_mo_data();
    assert_eq!(written["2"], json!({"MIID": "fw", "MAID": "serverid:dms2.example.com", "AccessRights": 1}));
    assert_eq!(DelegationAccessControl::from_mo_data(&written), Ok(access));
}

#[test]
fn dmdac_permits_per_instance_with_wildcard_maid() {
    let instances = [fumo_access_control().unwrap()];
    let fumo = "urn:oma:mo:oma-fumo:1.0";
    let devinfo = "urn:oma:mo:oma-dm-devinfo:1.2";
    let (dms1, dms2) = ("dms1.example.com", "dms2.example.com");
    let cases = [
        // dms1 holds every right on "fw".
        (dms1, fumo, "fw", Operation::Read, true),
        (dms1, fumo, "fw", Operation::Write, true),
        (dms1, fumo, "fw", Operation::Execute, true),
        (dms1, fumo, "fw", Operation::Delegate, true),
        // dms2 may read, and execute through the "*" entry, but not write or delegate.
        (dms2, fumo, "fw", Operation::Read, true),
        (dms2, fumo, "fw", Operation::Execute, true),
        (dms2, fumo, "fw", Operation::Write, false),
        (dms2, fumo, "fw", Operation::Delegate, false),
        // An unknown server gets only what "*" grants.
        ("dms9", fumo, "fw", Operation::Execute, true),
        ("dms9", fumo, "fw", Operation::Read, false),
        // Application entries never grant a DM server anything.
        ("com.example.updater", fumo, "modem", Operation::Read, false),
        // Other instances and other MOIDs get nothing.
        (dms1, fumo, "modem", Operation::Read, false),
        (dms1, devinfo, "fw", Operation::Read, false),
    ];
    for (server, moid, miid, operation, expected) in cases {
        assert_eq!(
            permits(&instances, server, moid, miid, operation),
            expected,
            "{server} {moid} {miid} {operation:?}"
        );
    }
    assert!(!permits(&[], dms1, fumo, "fw", Operation::Read));
}

#[test]
fn dmdac_check_for_a_package2_command() {
    let instances = [fumo_access_control().unwrap()];
    let fumo = "urn:oma:mo:oma-fumo:1.0";
    let allowed = |server: &str, command: &str| {
        Operation::for_command(command, fumo)
            .map(|operation| operation.is_none_or(|operation| permits(&instances, server, fumo, "fw", operation)))
    };
    assert_eq!(allowed("dms2.example.com", "GET"), Ok(true));
    assert_eq!(allowed("dms2.example.com", "HGET"), Ok(false));
    assert_eq!(allowed("dms2.example.com", "EXEC"), Ok(true));
    assert_eq!(allowed("dms2.example.com", "END"), Ok(true));
    assert_eq!(allowed("dms2.example.com", "FROB").map_err(|error| u16::from(error.status_code())), Err(501));
}

#[test]
fn fumo_instance_during_a_download_and_update() {
    let mo_data = json!({
        "PkgName": "Firmware R12",
        "PkgVersion": "12.0.1",
        "Download": {"PkgURL": ""},
        "Update": {},
        "DownloadAndUpdate": {"PkgURL": "https://fw.example.com/ex-200/r12.0.1.bin"},
        "State": "30",
        "Ext": {"Progress": 42}
    });
    let fumo = FirmwareUpdate::from_mo_data(&mo_data).unwrap();
    assert_eq!(fumo.state, FumoState::DownloadProgressing);
    assert_eq!(fumo.download_url, None);
    assert_eq!(fumo.download_and_update_url.as_deref(), Some("https://fw.example.com/ex-200/r12.0.1.bin"));
    assert_eq!(fumo.update_package, None);
    assert_eq!(
        fumo.to_mo_data(),
        json!({
            "PkgName": "Firmware R12",
            "PkgVersion": "12.0.1",
            "Download": {},
            "Update": {},
            "DownloadAndUpdate": {"PkgURL": "https://fw.example.com/ex-200/r12.0.1.bin"},
            "State": 30,
            "Ext": {"Progress": 42}
        })
    );
    assert_eq!(FirmwareUpdate::MOID, "urn:oma:mo:oma-fumo:1.0");
}

#[test]
fn fumo_update_package_travels_as_base64() {
    let fumo = FirmwareUpdate {
        package_name: None,
        package_version: None,
        download_url: None,
        update_package: Some(vec![0x7f, b'E', b'L', b'F', 0, 255]),
        download_and_update_url: None,
        state: FumoState::ReadyToUpdate,
        extensions: None,
    };
    let mo_data = fumo.to_mo_data();
    assert_eq!(mo_data["Update"]["PkgData"], json!("f0VMRgD/"));
    assert_eq!(FirmwareUpdate::from_mo_data(&mo_data), Ok(fumo));
}

#[test]
fn fumo_operation_end_reported_by_generic_alert() {
    // The alert item a device sends after EXEC on DownloadAndUpdate fails verification.
    let item = json!({
        "AlertType": "org.openmobilealliance.dm.firmwareupdate.downloadandupdate",
        "SourceURI": "urn:oma:mo:oma-fumo:1.0//DownloadAndUpdate",
        "Mark": "critical",
        "Data": 404
    });
    let operation = FumoOperation::from_alert_type(item["AlertType"].as_str().unwrap());
    assert_eq!(operation, Some(FumoOperation::DownloadAndUpdate));
    let result = FumoResultCode::from_alert_data(&item["Data"]).unwrap();
    assert_eq!(result, FumoResultCode::PACKAGE_VALIDATION_FAILED);
    assert!(!result.is_successful());
    assert_eq!(result.meaning(), "Failed Firmware Update Package Validation");
}

fn generic<T: ManagementObject>(value: &T) -> Result<T, MoError> {
    T::from_dmmo_document(&value.to_dmmo_document("inst"))
}

#[test]
fn every_mo_round_trips_through_the_trait() {
    assert_eq!(generic(&devinfo()), Ok(devinfo()));
    let session = SessionInfo { bearer_type: BearerType::Wireline, roaming: RoamingStatus::Unknown };
    assert_eq!(generic(&session), Ok(session));
    let access = fumo_access_control().unwrap();
    assert_eq!(generic(&access), Ok(access));
    let account = DmAccount::from_dmmo_document(&bootstrap_document()).unwrap();
    assert_eq!(generic(&account), Ok(account));
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn optional_nonempty() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[!-~]{1,12}")
}

prop_compose! {
    fn account()(
        server_id in text(),
        name in text(),
        permissions in proptest::collection::btree_map("[A-Za-z0-9]{1,6}", "[!-~]{1,20}", 0..4),
        auth in proptest::option::of((prop_oneof![Just(0_i64), -5..5_i64], text())),
        gcm in proptest::option::of((text(), text(), text(), optional_nonempty())),
    ) -> DmAccount {
        DmAccount {
            server_id,
            name,
            permissions: permissions.into_iter().map(|(name, moid)| (name, Permission::new(moid))).collect::<BTreeMap<_, _>>(),
            notification_auth: auth.map(|(value, secret)| NotificationAuth { auth_type: NotificationAuthType::from_value(value), secret }),
            push: gcm.map(|(sender_id, registration_url, unregistration_url, registration_parameters)| Push {
                gcm: Some(GcmPush { sender_id, registration_url, unregistration_url, registration_parameters, extensions: None }),
                ..Push::default()
            }),
        }
    }
}

prop_compose! {
    fn access_control()(
        moid in "[!-~]{1,20}",
        entries in proptest::collection::btree_map(
            "[A-Za-z0-9]{1,6}".prop_filter("not the MOID leaf", |name| name != "MOID"),
            (text(), prop_oneof![
                "[!-~]{1,8}".prop_map(ManagementAuthority::Server),
                "[!-~]{1,8}".prop_map(ManagementAuthority::Application),
                Just(ManagementAuthority::Everyone),
            ], 0..16_u8),
            0..5,
        ),
    ) -> DelegationAccessControl {
        let entries = entries
            .into_iter()
            .map(|(name, (miid, authority, bits))| (name, AccessControlEntry { miid, authority, rights: AccessRights::from_bits_truncate(bits) }))
            .collect();
        DelegationAccessControl { moid, entries }
    }
}

prop_compose! {
    fn firmware_update()(
        package_name in proptest::option::of(text()),
        package_version in proptest::option::of(text()),
        download_url in optional_nonempty(),
        update_package in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        download_and_update_url in optional_nonempty(),
        state in proptest::sample::select(vec![10_i64, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    ) -> FirmwareUpdate {
        FirmwareUpdate {
            package_name,
            package_version,
            download_url,
            update_package,
            download_and_update_url,
            state: FumoState::from_value(state).unwrap_or(FumoState::Idle),
            extensions: None,
        }
    }
}

proptest! {
    #[test]
    fn accounts_round_trip(account in account()) {
        prop_assert_eq!(DmAccount::from_mo_data(&account.to_mo_data()), Ok(account));
    }

    #[test]
    fn access_controls_round_trip(access in access_control()) {
        prop_assert_eq!(DelegationAccessControl::from_mo_data(&access.to_mo_data()), Ok(access));
    }

    #[test]
    fn firmware_updates_round_trip(fumo in firmware_update()) {
        prop_assert_eq!(FirmwareUpdate::from_mo_data(&fumo.to_mo_data()), Ok(fumo));
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        let _ = DevInfo::from_mo_data(&value);
        let _ = DmAccount::from_mo_data(&value);
        let _ = DelegationAccessControl::from_mo_data(&value);
        let _ = SessionInfo::from_mo_data(&value);
        let _ = FirmwareUpdate::from_mo_data(&value);
        let _ = FumoResultCode::from_alert_data(&value);
    }
}

/// JSON trees biased toward the node names the MOs read, so parsing goes deep.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let names = proptest::sample::select(vec![
        "DevID",
        "Man",
        "ServerID",
        "Name",
        "Permissions",
        "MOID",
        "AuthNoti",
        "AuthType",
        "AuthSecret",
        "Push",
        "GCM",
        "RegURL",
        "CBT",
        "ROAMING",
        "State",
        "Download",
        "Update",
        "PkgData",
        "PkgURL",
        "MIID",
        "MAID",
        "AccessRights",
        "1",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9a-zA-Z:*=+/-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map(names.clone(), inner, 0..6).prop_map(|map| {
                Value::Object(map.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
            }),
        ]
    })
}
