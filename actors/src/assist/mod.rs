//! Agent assist, pure: the call's script with the contact's fields filled in
//! ([`script`]), and a knowledge base searchable by keyword in Chinese and English
//! ([`kb`]: Chinese is segmented into words with jieba's dictionary, not split on spaces).

pub mod kb;
pub mod script;
