using System.CommandLine;
using Qwen3Cluster.Cli.Commands;

var root = new RootCommand("qwen3: a serving cluster for Qwen3 and Qwen3-MoE models")
{
    MakeModelCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommand.Create(),
    ServeCommand.Create(),
    DemoModelCommand(),
    ChatCommand.Create(),
    BenchCommand.Create(),
};
return await root.Parse(args).InvokeAsync();

static Command DemoModelCommand()
{
    var command = new Command("demo-model", "Print the demo model's folder, making it first if needed");
    command.SetAction(async (_, ct) =>
    {
        Console.WriteLine(await Qwen3Cluster.Cli.DemoModel.EnsureAsync(ct));
        return 0;
    });
    return command;
}
