using System.CommandLine;
using Qwen3Cluster.Cli.Commands;
using Qwen3Cluster.Silos;

var root = new RootCommand("qwen3: a serving cluster for Qwen3 and Qwen3-MoE models")
{
    MakeModelCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommand.Create(),
    ServeCommand.Create(),
    DemoModelCommand(),
    ChatCommand.Create(),
    ClusterCommand.Create(),
    BenchCommand.Create(),
    KernelsCommand.Create(),
    QuantizationReportCommand.Create(),
};
try
{
    // SIGTERM / Ctrl-C cancel the command; System.CommandLine's default of 2 s before it ends the process (exit 143)
    // would cut short a silo's graceful leave, which waits for its grains to be handed over.
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration
    {
        EnableDefaultExceptionHandler = false,
        ProcessTerminationTimeout = SiloHosting.ProcessTerminationTimeout,
    });
}
catch (Exception e) when (e is Qwen3Cluster.Model.Config.ModelConfigException or Qwen3Cluster.Model.Checkpoint.CheckpointException
    or Qwen3Cluster.Model.Tokenization.TokenizerFormatException or Qwen3Cluster.Model.Tokenization.TokenizerIntegrityException
    or Qwen3Cluster.Model.Engine.RequestError or FormatException or IOException or UnauthorizedAccessException or HttpRequestException or Grpc.Core.RpcException)
{
    // Problems with the user's files, network or server: the message says what and where; a stack trace would not help.
    Console.Error.WriteLine(e is Grpc.Core.RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message);
    return 2;
}

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
