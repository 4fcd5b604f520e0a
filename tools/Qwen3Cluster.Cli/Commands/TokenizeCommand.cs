using System.CommandLine;
using System.Text.Json;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Cli.Commands;

/// <summary><c>qwen3 tokenize</c>: token ids of a text, or of a conversation rendered with the chat template.</summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder (its tokenizer.json)", Required = true };
        var text = new Option<string?>("--text") { Description = "Text to encode as is" };
        var messages = new Option<string?>("--messages") { Description = "JSON file: [{\"role\":\"user\",\"content\":\"...\"}, ...]" };
        var noThinking = new Option<bool>("--no-thinking") { Description = "Render the generation prompt with thinking switched off" };
        var command = new Command("tokenize", "Print the token ids of a text or of a conversation as a JSON array")
        {
            model, text, messages, noThinking,
        };
        command.SetAction(parse =>
        {
            string? plain = parse.GetValue(text), file = parse.GetValue(messages);
            if ((plain is null) == (file is null))
            {
                Console.Error.WriteLine("Give exactly one of --text or --messages.");
                return 2;
            }
            var tokenizer = Qwen3Tokenizer.Load(parse.GetValue(model)!);
            int[] ids;
            if (plain is not null)
            {
                ids = tokenizer.Encode(plain);
            }
            else
            {
                var conversation = ChatMessages.ParseFile(file!);
                string rendered = ChatTemplate.For(tokenizer).Render(conversation, addGenerationPrompt: true,
                    enableThinking: parse.GetValue(noThinking) ? false : null);
                ids = tokenizer.Encode(rendered);
            }
            Console.WriteLine(JsonSerializer.Serialize(ids));
            return 0;
        });
        return command;
    }
}
