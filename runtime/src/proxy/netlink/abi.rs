//! The kernel's nf_tables netlink numbers (`linux/netfilter/nf_tables.h`, `nfnetlink.h`,
//! `netlink.h`) and nft's data types, as the encoder uses them.

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
pub(super) const NFT_MSG_GETTABLE: u16 = 1;
pub(super) const NFT_MSG_DELTABLE: u16 = 2;
pub(super) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(super) const NFT_MSG_DELCHAIN: u16 = 5;
pub(super) const NFT_MSG_NEWRULE: u16 = 6;
pub(super) const NFT_MSG_DELRULE: u16 = 8;
pub(super) const NFT_MSG_NEWSET: u16 = 9;
pub(super) const NFT_MSG_DELSET: u16 = 11;
pub(super) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(super) const NFT_MSG_DELSETELEM: u16 = 14;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_APPEND: u16 = 0x800;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NFPROTO_IPV4: u8 = 2;
/// `SOL_NETLINK` option: errors carry only the request's header, not all of it.
pub(super) const NETLINK_CAP_ACK: libc::c_int = 10;

// Attributes (linux/netfilter/nf_tables.h).
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_TABLE_NAME: u16 = 1;
pub(super) const NFTA_TABLE_FLAGS: u16 = 2;
pub(super) const NFTA_TABLE_HANDLE: u16 = 4;
pub(super) const NFTA_CHAIN_TABLE: u16 = 1;
pub(super) const NFTA_CHAIN_HOOK: u16 = 4;
pub(super) const NFTA_CHAIN_NAME: u16 = 3;
pub(super) const NFTA_CHAIN_POLICY: u16 = 5;
pub(super) const NFTA_CHAIN_TYPE: u16 = 7;
pub(super) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(super) const NFTA_HOOK_PRIORITY: u16 = 2;
pub(super) const NFTA_RULE_TABLE: u16 = 1;
pub(super) const NFTA_RULE_CHAIN: u16 = 2;
pub(super) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(super) const NFTA_EXPR_NAME: u16 = 1;
pub(super) const NFTA_EXPR_DATA: u16 = 2;
pub(super) const NFTA_SET_TABLE: u16 = 1;
pub(super) const NFTA_SET_NAME: u16 = 2;
pub(super) const NFTA_SET_FLAGS: u16 = 3;
pub(super) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(super) const NFTA_SET_KEY_LEN: u16 = 5;
pub(super) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(super) const NFTA_SET_DATA_LEN: u16 = 7;
pub(super) const NFTA_SET_DESC: u16 = 9;
pub(super) const NFTA_SET_DESC_SIZE: u16 = 1;
pub(super) const NFTA_SET_ID: u16 = 10;
pub(super) const NFTA_SET_TIMEOUT: u16 = 11;
pub(super) const NFTA_SET_USERDATA: u16 = 13;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(super) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
pub(super) const NFTA_DATA_VERDICT: u16 = 2;
pub(super) const NFTA_VERDICT_CODE: u16 = 1;
pub(super) const NFTA_VERDICT_CHAIN: u16 = 2;

pub(super) const NFT_SET_ANONYMOUS: u32 = 0x1;
pub(super) const NFT_SET_CONSTANT: u32 = 0x2;
pub(super) const NFT_SET_MAP: u32 = 0x8;
pub(super) const NFT_SET_TIMEOUT: u32 = 0x10;
pub(super) const NFT_SET_EVAL: u32 = 0x20;
/// nft's datatype ids, and its concatenations of them (6 bits each).
pub(super) const TYPE_VERDICT: u32 = 0xffff_ff00;
pub(super) const TYPE_INTEGER: u32 = 4;
pub(super) const TYPE_IPADDR: u32 = 7;
pub(super) const TYPE_INET_PROTO: u32 = 12;
pub(super) const TYPE_INET_SERVICE: u32 = 13;
pub(super) const fn concat(a: u32, b: u32) -> u32 {
    (a << 6) | b
}

pub(super) const NF_ACCEPT: u32 = 1;
pub(super) const NF_DROP: u32 = 0;
pub(super) const NFT_JUMP: i32 = -3;
pub(super) const NFT_GOTO: i32 = -4;
pub(super) const NFT_RETURN: i32 = -5;

pub(super) const NFT_REG_VERDICT: u32 = 0;
pub(super) const NFT_REG_1: u32 = 1;
pub(super) const NFT_REG_2: u32 = 2;
/// The 32-bit registers after `NFT_REG_1`'s first word (nft numbers them 9, 10, ...).
pub(super) const NFT_REG32_01: u32 = 9;
pub(super) const NFT_REG32_02: u32 = 10;

pub(super) const NFT_PAYLOAD_NETWORK: u32 = 1;
pub(super) const NFT_PAYLOAD_TRANSPORT: u32 = 2;
pub(super) const NFT_META_MARK: u32 = 3;
pub(super) const NFT_META_L4PROTO: u32 = 16;
pub(super) const NFT_CT_STATE: u32 = 0;
pub(super) const NFT_CT_STATUS: u32 = 2;
pub(super) const NFT_CMP_EQ: u32 = 0;
pub(super) const NFT_CMP_NEQ: u32 = 1;
pub(super) const NFT_NAT_DNAT: u32 = 1;
pub(super) const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
pub(super) const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
pub(super) const NFT_REJECT_ICMP_UNREACH: u32 = 0;
pub(super) const NFT_REJECT_TCP_RST: u32 = 1;
pub(super) const ICMP_PORT_UNREACH: u8 = 3;
pub(super) const NFT_NG_RANDOM: u32 = 1;
pub(super) const NFT_DYNSET_OP_UPDATE: u32 = 1;
pub(super) const NFTA_FIB_F_SADDR: u32 = 1;
pub(super) const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub(super) const RTN_LOCAL: u32 = 2;
pub(super) const IP_CT_DNAT: u32 = 0x20;
pub(super) const CT_STATE_NEW: u32 = 0x08;
