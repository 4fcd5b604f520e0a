using System.CommandLine;
using System.Text;
using Grpc.Core;
using Qwen3Cluster.Protos.V1;
using Spectre.Console;

namespace Qwen3Cluster.Cli.Commands;

/// <summary>
/// <c>qwen3 chat</c>: a terminal conversation over gRPC. The session keeps the conversation (and its KV cache) in
/// the cluster, so each turn sends only the new message; replies stream as they are sampled, thinking apart.
/// </summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var endpoint = new Option<string>("--endpoint") { Description = "gRPC address of a gateway", DefaultValueFactory = _ => "http://127.0.0.1:50051" };
        var session = new Option<string?>("--session") { Description = "Continue this session instead of starting one" };
        var apiKey = new Option<string?>("--api-key") { Description = "API key (default: $QWEN3_API_KEY)" };
        var noThinking = new Option<bool>("--no-thinking") { Description = "Ask the model not to think first" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Reply length limit", DefaultValueFactory = _ => 1024 };
        var temperature = new Option<float?>("--temperature") { Description = "Sampling temperature (default: the model's)" };
        var command = new Command("chat", "Chat with the model in this terminal (/new starts over, /exit or Ctrl-D quits)")
        {
            endpoint, session, apiKey, noThinking, maxTokens, temperature,
        };
        command.SetAction(async (parse, ct) =>
        {
            using var channel = GrpcConnection.Open(parse.GetValue(endpoint)!, parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("QWEN3_API_KEY"));
            var inference = new Inference.InferenceClient(channel);
            var sessions = new Sessions.SessionsClient(channel);
            try
            {
                string id = parse.GetValue(session) ?? (await sessions.CreateSessionAsync(new CreateSessionRequest(), cancellationToken: ct)).SessionId;
                var info = await sessions.GetSessionAsync(new GetSessionRequest { SessionId = id }, cancellationToken: ct);
                Terminal.Info($"session {id} ({info.Model}, {info.Turns} turn(s) so far); /new starts over, /exit quits");
                var sampling = new SamplingParams { MaxTokens = parse.GetValue(maxTokens) };
                if (parse.GetValue(temperature) is float t) sampling.Temperature = t;
                while (!ct.IsCancellationRequested)
                {
                    Console.Error.Write("> ");
                    string? line = Console.ReadLine();
                    if (line is null || line.Trim() == "/exit") break;
                    if (line.Trim() == "/new")
                    {
                        id = (await sessions.CreateSessionAsync(new CreateSessionRequest(), cancellationToken: ct)).SessionId;
                        Terminal.Info($"session {id}");
                        continue;
                    }
                    if (line.Trim().Length == 0) continue;
                    var request = new ChatRequest { SessionId = id, Sampling = sampling };
                    if (parse.GetValue(noThinking)) request.EnableThinking = false;
                    request.Messages.Add(new Message { Role = "user", Content = line });
                    await StreamReplyAsync(inference.Chat(request, cancellationToken: ct), ct);
                }
                return 0;
            }
            catch (RpcException e)
            {
                Terminal.Info($"{e.StatusCode}: {e.Status.Detail}");
                return 1;
            }
        });
        return command;
    }

    static async Task StreamReplyAsync(AsyncServerStreamingCall<GenerateResponse> call, CancellationToken ct)
    {
        var view = new ThinkingView();
        Usage? usage = null;
        string finish = "";
        await foreach (var response in call.ResponseStream.ReadAllAsync(ct))
        {
            view.Write(response.Text);
            usage = response.Usage ?? usage;
            if (response.FinishReason.Length > 0) finish = response.FinishReason;
        }
        view.End();
        if (usage is not null)
            Terminal.Info($"[{finish}; {usage.PromptTokens} prompt tokens, {usage.CachedPromptTokens} from cache, {usage.CompletionTokens} generated]");
    }

    /// <summary>Shows text between &lt;think&gt; and &lt;/think&gt; dimmed (or labelled, without colours) and the answer plainly.</summary>
    sealed class ThinkingView
    {
        const string Open = "<think>", Close = "</think>";
        readonly StringBuilder _pending = new();
        readonly bool _colours = AnsiConsole.Profile.Capabilities.Ansi && !Console.IsOutputRedirected;
        bool _thinking;

        public void Write(string text)
        {
            _pending.Append(text);
            while (true)
            {
                string s = _pending.ToString();
                string marker = _thinking ? Close : Open;
                int at = s.IndexOf(marker, StringComparison.Ordinal);
                if (at < 0)
                {
                    int keep = Math.Min(s.Length, marker.Length - 1);
                    while (keep > 0 && !marker.StartsWith(s[^keep..], StringComparison.Ordinal)) keep--;
                    Emit(s[..^keep]);
                    _pending.Remove(0, s.Length - keep);
                    return;
                }
                Emit(s[..at]);
                _pending.Remove(0, at + marker.Length);
                _thinking = !_thinking;
                if (_thinking) Console.Write(_colours ? "\u001b[2;3m" : "[thinking] ");
                else Console.Write(_colours ? "\u001b[0m" : "\n[answer] ");
            }
        }

        void Emit(string text)
        {
            if (text.Length > 0) Console.Write(text);
        }

        public void End()
        {
            Emit(_pending.ToString());
            if (_thinking && _colours) Console.Write("\u001b[0m");
            Console.WriteLine();
        }
    }
}
