using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Tokenization;
using Proto = Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// A chat reply with tools as gRPC responses: the reply's text goes through <see cref="ToolCallParser"/> (after the
/// opening a forced call began with), content stays in <c>text</c>, and each call it completes is a
/// <c>tool_calls</c> entry of the response where it closed; a reply with calls that ended by itself finishes
/// "tool_calls". Tokens are passed on as they are; an update with an error is thrown, to end the call with its status.
/// </summary>
public sealed class GrpcToolCalls
{
    readonly ToolCallParser _parser = new();

    public GrpcToolCalls(ToolChoice tools) => _parser.Push(tools.ForcedPrefix);

    public async IAsyncEnumerable<Proto.GenerateResponse> Map(IAsyncEnumerable<GenerationUpdate> updates)
    {
        await foreach (var update in updates)
        {
            if (update.Error is { } error) throw error;
            var events = _parser.Push(update.Text).ToList();
            if (update.IsFinal) events.AddRange(_parser.Finish());
            var response = (update with { Text = string.Concat(events.OfType<ContentEvent>().Select(e => e.Text)) }).ToResponse();
            response.ToolCalls.AddRange(events.OfType<CallEvent>().Select(c => new Proto.ToolCall
            {
                Id = "call_" + Guid.NewGuid().ToString("N")[..24],
                Name = c.Name,
                ArgumentsJson = c.Arguments,
            }));
            if (update.FinishReason == FinishReasons.Stop && _parser.Calls > 0) response.FinishReason = "tool_calls";
            yield return response;
        }
    }
}
