//! AWS partitions: which regions belong together, and the domain of their STS hosts.

use crate::error::{Error, Result};

/// An AWS partition: which regions belong to it, the domain of their STS hosts,
/// and the region the aws CLI falls back to when a profile names none.
#[derive(Debug, PartialEq, Eq)]
pub struct Partition {
    pub name: &'static str,
    /// Region names are `{head}-{word}-{digits}` for one of these heads.
    heads: &'static [&'static str],
    pub domain: &'static str,
    pub default_region: &'static str,
    pub regions: &'static [&'static str],
}

/// Every partition fleetctx knows (botocore's `endpoints.json` region patterns).
pub const PARTITIONS: [Partition; 8] = [
    Partition {
        name: "aws",
        heads: &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"],
        domain: "amazonaws.com",
        default_region: "us-east-1",
        regions: &COMMERCIAL_REGIONS,
    },
    Partition {
        name: "aws-cn",
        heads: &["cn"],
        domain: "amazonaws.com.cn",
        default_region: "cn-north-1",
        regions: &["cn-north-1", "cn-northwest-1"],
    },
    Partition {
        name: "aws-us-gov",
        heads: &["us-gov"],
        domain: "amazonaws.com",
        default_region: "us-gov-west-1",
        regions: &["us-gov-east-1", "us-gov-west-1"],
    },
    Partition {
        name: "aws-iso",
        heads: &["us-iso"],
        domain: "c2s.ic.gov",
        default_region: "us-iso-east-1",
        regions: &["us-iso-east-1", "us-iso-west-1"],
    },
    Partition {
        name: "aws-iso-b",
        heads: &["us-isob"],
        domain: "sc2s.sgov.gov",
        default_region: "us-isob-east-1",
        regions: &["us-isob-east-1"],
    },
    Partition {
        name: "aws-iso-e",
        heads: &["eu-isoe"],
        domain: "cloud.adc-e.uk",
        default_region: "eu-isoe-west-1",
        regions: &["eu-isoe-west-1"],
    },
    Partition {
        name: "aws-iso-f",
        heads: &["us-isof"],
        domain: "csp.hci.ic.gov",
        default_region: "us-isof-south-1",
        regions: &["us-isof-east-1", "us-isof-south-1"],
    },
    Partition {
        name: "aws-eusc",
        heads: &["eusc-de"],
        domain: "amazonaws.eu",
        default_region: "eusc-de-east-1",
        regions: &["eusc-de-east-1"],
    },
];

/// The partition a region belongs to. An unknown shape is refused: falling back
/// to the commercial partition would sign for, and scan, the wrong cloud.
pub fn partition_of(region: &str) -> Result<&'static Partition> {
    let shaped = |head: &str| {
        region
            .strip_prefix(head)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(word, number)| {
                !word.is_empty()
                    && word.chars().all(|c| c.is_ascii_alphanumeric())
                    && !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())
            })
    };
    PARTITIONS
        .iter()
        .find(|p| p.heads.iter().any(|h| shaped(h)))
        .ok_or_else(|| {
            let names: Vec<&str> = PARTITIONS.iter().map(|p| p.name).collect();
            Error::new(format!(
                "region {region:?} belongs to no AWS partition fleetctx knows"
            ))
            .hint(format!(
                "check the region name (`aws ec2 describe-regions`); fleetctx knows {}",
                names.join(", ")
            ))
        })
}

/// The STS host that EKS accepts in a token for `region` (never an endpoint
/// override: the token's host is checked by the cluster, not by us).
pub fn sts_host(region: &str) -> Result<String> {
    Ok(format!("sts.{region}.{}", partition_of(region)?.domain))
}

/// Every commercial region (EKS runs in all of them); opt-in regions an account
/// has not enabled answer "not enabled", which is an empty region.
pub const COMMERCIAL_REGIONS: [&str; 34] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_pick_their_sts_host() {
        for (region, host) in [
            ("eu-west-1", "sts.eu-west-1.amazonaws.com"),
            ("ap-southeast-7", "sts.ap-southeast-7.amazonaws.com"),
            ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
            ("us-gov-west-1", "sts.us-gov-west-1.amazonaws.com"),
            ("us-iso-east-1", "sts.us-iso-east-1.c2s.ic.gov"),
            ("us-isob-east-1", "sts.us-isob-east-1.sc2s.sgov.gov"),
            ("us-isof-south-1", "sts.us-isof-south-1.csp.hci.ic.gov"),
            ("eu-isoe-west-1", "sts.eu-isoe-west-1.cloud.adc-e.uk"),
        ] {
            assert_eq!(sts_host(region).unwrap(), host, "{region}");
        }
        for region in ["xx-west-1", "us-east", "mars-north-1", "us-gov-west", ""] {
            assert!(sts_host(region).is_err(), "{region} has no partition");
        }
    }

    #[test]
    fn every_partition_lists_only_its_own_regions() {
        for partition in &PARTITIONS {
            assert!(partition.regions.contains(&partition.default_region));
            for region in partition.regions {
                assert_eq!(partition_of(region).unwrap().name, partition.name);
            }
        }
    }
}
