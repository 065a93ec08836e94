//! Dictionaries: Japanese surnames and given names, English first names and surnames, and
//! the 47 prefectures. Names alone are weak evidence (DETECTION.md §4.2); they type table
//! columns and anchor prose records, never a verdict on their own.
//!
//! The lists are the most common names (compiled by hand for this project); coverage of the
//! long tail comes from shape rules in `entities.rs`, not from the dictionary.

use std::collections::HashSet;
use std::sync::LazyLock;

const JA_SURNAMES: &str = "佐藤 鈴木 高橋 田中 伊藤 渡辺 渡邊 渡邉 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 林 斎藤 斉藤 齋藤 清水 \
山崎 森 池田 橋本 阿部 石川 山下 中島 石井 小川 前田 岡田 長谷川 藤田 後藤 近藤 村上 遠藤 青木 坂本 福田 太田 西村 藤井 金子 \
岡本 藤原 中野 三浦 原田 中川 松田 竹内 小野 田村 中山 和田 石田 森田 上田 原 柴田 酒井 工藤 横山 宮崎 宮本 内田 高木 安藤 島田 \
谷口 大野 高田 丸山 今井 河野 藤本 村田 武田 上野 杉山 増田 平野 大塚 千葉 久保 松井 小島 岩崎 桜井 野口 松尾 野村 木下 菊地 \
佐野 大西 杉本 新井 浜田 菅原 市川 水野 小松 山内 西田 菊池 西川 五十嵐 北村 安田 中田 川口 平田 川崎 飯田 吉川 本田 久保田 沢田 \
辻 関 吉村 渡部 岩田 中西 服部 樋口 福島 川上 永井 松岡 田口 山中 森本 土屋 矢野 広瀬 秋山 石原 松下 大橋 松浦 吉岡 小池 馬場 \
浅野 荒木 大久保 野田 小沢 田辺 川村 星野 黒田 堀 尾崎 望月 永田 熊谷 内藤 松村 西山 大谷 平井 大島 岩本 片山 本間 早川 横田 \
岡崎 荒井 大石 鎌田 成田 宮田 小田 石橋 篠原 須藤 河合 大川 高野 藤川 小山 土井 宮下 今村 上原 松永 岩井 武藤 内山 田島 北川 \
堀内 古川 前川 関口 白石 榎本 坂口 小西 大森 奥村 宮内 中尾 細川 吉野 上村 片岡 千田 若林 富田 竹田 及川 桑原 広田 稲垣 松崎 \
大山 南 小原 岡 高山 東 竹中 川田 浅井 中原 米田 根本 森川 栗原 三宅 小泉 足立 福井 坂井 大和田 中谷 北野 日高 奥田 岸 芦田 \
鶴田 大竹 石黒 西岡 山根 浜口 宇野 坂田 内海 植田 西尾 鈴村 福本 梅田 片桐 平山 岩瀬 谷 加納 宮川 村井 相馬 今野 三上 富永 \
関根 久保木 赤松 松山 大森 須田 森下 寺田 秋元 金田 吉原 長尾 畑 水谷 西野 中嶋 木内 宮原 石塚 石崎 長田 飯塚 長井 野中 \
徳永 山岸 大沢 小谷 岩下 川島 竹下 吉沢 青山 児玉 小倉 山川 野崎 新田 菅野 武井 阪本 戸田 塚本 井口 大城 比嘉 金城 宮城 \
新垣 玉城 上間 島袋 安里 伊佐 我那覇 嘉手納";

const JA_GIVEN: &str = "太郎 一郎 二郎 三郎 次郎 健一 健二 健太 健 翔太 翔 大輔 拓也 直樹 達也 哲也 和也 誠 学 浩 博 隆 茂 実 清 勇 \
明 聡 剛 修 豊 稔 進 正 弘 亮 涼 蓮 陽翔 大和 湊 悠真 颯太 陽太 樹 大樹 海斗 蒼 優斗 悠斗 翼 拓海 陸 航 奏太 康介 雄太 慎也 裕太 \
雅人 智也 洋平 大介 隼人 恭平 光 勝 昭 武 秀樹 英樹 正樹 雅之 浩二 浩一 孝 剛志 淳 純一 一樹 圭 圭介 啓介 俊介 駿 颯 新 律 \
悠人 朝陽 結翔 碧 樹 陽斗 晴 蒼空 大翔 湊斗 悠 慎吾 将太 貴之 秀明 義男 幸男 正男 和夫 一男 敏夫 俊夫 信夫 茂雄 昭夫 \
花子 陽子 恵子 洋子 幸子 和子 裕子 京子 久美子 直美 美穂 美咲 さくら 愛 彩 結衣 陽菜 葵 凛 芽依 結菜 美桜 莉子 美羽 楓 七海 \
真央 優奈 愛美 沙織 香織 麻衣 由美 智子 恵美 明美 真由美 友美 千尋 舞 瞳 綾 奈々 遥 桃子 紗希 彩花 杏 心春 陽葵 紬 澪 咲良 \
凜 結愛 芽衣 美月 心愛 琴音 日葵 花 明日香 亜美 絵美 加奈 佳奈 香 薫 智美 典子 法子 節子 昌子 順子 文子 容子 静香 美智子 \
由紀 由香 由佳 友子 優子 悦子 良子 純子 眞理子 真理子 理恵 理沙 里奈 梨花 涼子 玲奈 恵 めぐみ ゆみ ひとみ あゆみ まゆみ";

const EN_FIRST: &str = "james john robert michael william david richard joseph thomas charles christopher daniel matthew \
anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob gary \
nicholas eric jonathan stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick raymond jack dennis \
jerry tyler aaron jose adam nathan henry douglas zachary peter kyle noah ethan jeremy walter christian keith roger terry austin \
sean gerald carl harold dylan arthur lawrence jordan jesse bryan billy bruce gabriel joe logan alan juan albert willie elijah \
wayne randy vincent mason roy ralph bobby russell bradley philip eugene liam oliver lucas leo oscar harry charlie tom tim bob \
mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty sandra margaret ashley kimberly emily \
donna michelle carol amanda melissa deborah stephanie dorothy rebecca sharon laura cynthia amy kathleen angela shirley brenda \
emma anna pamela nicole samantha katherine christine helen debra rachel carolyn janet maria catherine heather diane olivia julie \
joyce victoria ruth virginia lauren kelly christina joan evelyn judith andrea hannah megan cheryl jacqueline martha madison \
teresa gloria sara janice ann kathryn abigail sophia frances jean alice judy isabella julia grace amber denise danielle marilyn \
beverly charlotte natalie theresa diana brittany doris kayla alexis lori marie eve ava mia chloe lily zoe ella kate lucy";

const EN_LAST: &str = "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez \
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis robinson walker \
young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts \
gomez phillips evans turner diaz parker cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz \
morgan cooper peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray \
mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan \
bell coleman butler henderson barnes fisher vasquez simmons graham marshall owens harrison stone hunt black";

/// The 47 prefectures with their suffix (都/道/府/県).
pub const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

fn set(words: &'static str) -> HashSet<&'static str> {
    words.split_whitespace().collect()
}

static SURNAMES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(JA_SURNAMES));
static GIVEN: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(JA_GIVEN));
static FIRST: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(EN_FIRST));
static LAST: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(EN_LAST));

/// Longest surname in the dictionary, in characters.
const MAX_SURNAME_CHARS: usize = 4;

/// The length in bytes of a dictionary surname at the start of `s`, longest match first.
pub fn surname_prefix(s: &str) -> Option<usize> {
    let mut ends = [0usize; MAX_SURNAME_CHARS];
    let mut n = 0;
    for (i, c) in s.char_indices().take(MAX_SURNAME_CHARS) {
        ends[n] = i + c.len_utf8();
        n += 1;
    }
    ends[..n]
        .iter()
        .rev()
        .copied()
        .find(|&end| SURNAMES.contains(&s[..end]))
}

pub fn is_given_name(s: &str) -> bool {
    GIVEN.contains(s)
}

/// An English first name (case-insensitive).
pub fn is_first_name(s: &str) -> bool {
    s.len() <= 12 && FIRST.contains(s.to_ascii_lowercase().as_str())
}

/// An English surname (case-insensitive).
pub fn is_last_name(s: &str) -> bool {
    s.len() <= 14 && LAST.contains(s.to_ascii_lowercase().as_str())
}

/// The prefecture `s` starts with (with or without its suffix, `東京` or `東京都`), and the
/// number of bytes it covers.
pub fn prefecture_prefix(s: &str) -> Option<(&'static str, usize)> {
    for p in PREFECTURES {
        if s.starts_with(p) {
            return Some((p, p.len()));
        }
    }
    for p in PREFECTURES {
        let stem = p.trim_end_matches(['都', '道', '府', '県']);
        let stem = if p == "北海道" { p } else { stem };
        if s.starts_with(stem) {
            return Some((p, stem.len()));
        }
    }
    None
}

/// True when `s` is exactly a prefecture name (with or without suffix).
pub fn is_prefecture(s: &str) -> bool {
    prefecture_prefix(s).is_some_and(|(_, n)| n == s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries() {
        assert_eq!(surname_prefix("佐々木健太"), Some("佐々木".len()));
        assert_eq!(surname_prefix("山田 太郎"), Some("山田".len()));
        assert_eq!(surname_prefix("株式会社"), None);
        assert!(is_given_name("太郎"));
        assert!(is_first_name("Emily") && is_first_name("JAMES"));
        assert!(is_last_name("Smith"));
        assert_eq!(
            prefecture_prefix("東京都千代田区"),
            Some(("東京都", "東京都".len()))
        );
        assert_eq!(
            prefecture_prefix("大阪市北区"),
            Some(("大阪府", "大阪".len()))
        );
        assert!(is_prefecture("神奈川県") && is_prefecture("北海道") && is_prefecture("沖縄"));
        assert!(!is_prefecture("東京タワー"));
        assert_eq!(PREFECTURES.len(), 47);
    }
}
