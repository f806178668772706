/**
 * deploy/aws/: what each IAM role may do and whom it trusts, what the alarm watches, and
 * whom the queue policies admit, read from the templates themselves (cfn-lint, in
 * test/integration/cfn-lint.test.ts, checks that they are valid CloudFormation).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { AWS_TEMPLATES_DIR, actionsOf, readTemplate, roleStatements, type Template } from "../helpers/cloudformation.ts";

const queueArn = { "Fn::GetAtt": ["Queue", "Arn"] };
const resultQueueArn = { "Fn::If": ["UseSharedResultQueue", { Ref: "SharedResultQueueArn" }, { "Fn::GetAtt": ["ResultQueue", "Arn"] }] };
const readResults = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"];
const githubFederated = {
  "Fn::If": [
    "CreateOidcProvider",
    { Ref: "GitHubOidcProvider" },
    { "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/token.actions.githubusercontent.com" },
  ],
};
const mainBranchOrEnvironment = {
  "Fn::If": [
    "UseEnvironmentSubject",
    { "Fn::Sub": "repo:${GitHubRepository}:environment:${GitHubEnvironment}" },
    { "Fn::Sub": "repo:${GitHubRepository}:ref:refs/heads/${GitHubBranch}" },
  ],
};
const pullRequests = { "Fn::Sub": "repo:${GitHubRepository}:pull_request" };

function trustStatements(template: Template, role: string): unknown {
  return template.Resources[role].Properties.AssumeRolePolicyDocument.Statement;
}

function githubTrust(subject: unknown): unknown {
  return [
    {
      Effect: "Allow",
      Action: "sts:AssumeRoleWithWebIdentity",
      Principal: { Federated: githubFederated },
      Condition: { StringEquals: { "token.actions.githubusercontent.com:aud": "sts.amazonaws.com", "token.actions.githubusercontent.com:sub": subject } },
    },
  ];
}

/** Does a parameter's AllowedPattern admit `value`, as CloudFormation checks it? */
function admits(template: Template, parameter: string, value: string): boolean {
  return new RegExp(template.Parameters[parameter].AllowedPattern).test(value);
}

const fleetTopic = "arn:aws:sns:eu-west-1:123456789012:kube-pico-cd-fleet";

describe("deploy/aws/", () => {
  test("holds the cluster template and the fleet template", () => {
    expect(readdirSync(AWS_TEMPLATES_DIR).filter((f) => f.endsWith(".yaml")).sort()).toEqual(["fleet.yaml", "kube-pico-cd.yaml"]);
  });

  test.each(["kube-pico-cd.yaml", "fleet.yaml"])("no role in %s grants a wildcard action or resource", (file) => {
    const template = readTemplate(file);
    const roles = Object.keys(template.Resources).filter((name) => template.Resources[name].Type === "AWS::IAM::Role");
    expect(roles.length).toBeGreaterThan(0);
    for (const role of roles) {
      const statements = roleStatements(template, role);
      expect(actionsOf(statements).filter((a) => a.includes("*"))).toEqual([]);
      expect(statements.filter((s) => JSON.stringify(s.Resource).includes('"*"'))).toEqual([]);
      expect(statements.every((s) => s.Effect === "Allow")).toBe(true);
    }
  });
});

describe("deploy/aws/kube-pico-cd.yaml", () => {
  const template = readTemplate("kube-pico-cd.yaml");

  test("the publisher role may only send to the deploy queue, and read, delete and hand back results", () => {
    expect(roleStatements(template, "PublisherRole")).toEqual([
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: queueArn },
      { Effect: "Allow", Action: readResults, Resource: resultQueueArn },
    ]);
  });

  test("the publisher role trusts only GitHub's OIDC tokens for the given repository and branch or environment", () => {
    expect(trustStatements(template, "PublisherRole")).toEqual(githubTrust(mainBranchOrEnvironment));
  });

  test("the plan role is optional, trusts only the repository's pull_request tokens, and may only send to the deploy queue and read results", () => {
    expect(template.Resources.PlanRole.Condition).toBe("CreatePlanRoleAndRepository");
    expect(template.Conditions.CreatePlanRoleAndRepository).toEqual({ "Fn::And": [{ "Fn::Equals": [{ Ref: "CreatePlanRole" }, "true"] }, { Condition: "HasRepository" }] });
    expect(template.Parameters.CreatePlanRole.Default).toBe("false");
    expect(trustStatements(template, "PlanRole")).toEqual(githubTrust(pullRequests));
    expect(roleStatements(template, "PlanRole")).toEqual([
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: queueArn },
      { Effect: "Allow", Action: readResults, Resource: resultQueueArn },
    ]);
  });

  test("the listener role may only receive, delete, change visibility and read attributes of the deploy queue, send results, and move rejections to the dead-letter queue", () => {
    expect(roleStatements(template, "ListenerRole")).toEqual([
      {
        Effect: "Allow",
        Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        Resource: queueArn,
      },
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: resultQueueArn },
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: { "Fn::GetAtt": ["DeadLetterQueue", "Arn"] } },
    ]);
  });

  test("the IRSA trust policy names the listener's service account as subject", () => {
    const [, irsa] = template.Resources.ListenerRole.Properties.AssumeRolePolicyDocument["Fn::If"];
    const substituted = String(irsa["Fn::Sub"])
      .replaceAll("${EksOidcIssuer}", "oidc.example/id/X")
      .replaceAll("${ListenerNamespace}", "kube-pico-cd")
      .replaceAll("${ListenerServiceAccount}", "kube-pico-cd")
      .replaceAll("${AWS::Partition}", "aws")
      .replaceAll("${AWS::AccountId}", "123456789012");
    expect(JSON.parse(substituted).Statement[0].Condition.StringEquals).toEqual({
      "oidc.example/id/X:aud": "sts.amazonaws.com",
      "oidc.example/id/X:sub": "system:serviceaccount:kube-pico-cd:kube-pico-cd",
    });
  });

  test("both queues allow 1 MiB messages with SQS-managed encryption, and the deploy queue redrives to the dead-letter queue", () => {
    const { Queue, DeadLetterQueue } = template.Resources;
    for (const queue of [Queue, DeadLetterQueue]) {
      expect(queue.Properties.MaximumMessageSize).toBe(1048576);
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    }
    expect(Queue.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { "Fn::GetAtt": ["DeadLetterQueue", "Arn"] }, maxReceiveCount: { Ref: "MaxReceiveCount" } });
  });

  test("the result queue is encrypted, keeps results for an hour, and exists only when no shared one is given", () => {
    const { ResultQueue } = template.Resources;
    expect(ResultQueue.Condition).toBe("CreateResultQueue");
    expect(template.Conditions.CreateResultQueue).toEqual({ "Fn::Equals": [{ Ref: "SharedResultQueueArn" }, ""] });
    expect(template.Conditions.UseSharedResultQueue).toEqual({ "Fn::Not": [template.Conditions.CreateResultQueue] });
    expect(ResultQueue.Properties.SqsManagedSseEnabled).toBe(true);
    expect(ResultQueue.Properties.MessageRetentionPeriod).toBe(3600);
    expect(template.Outputs.ResultQueueUrl).toEqual({ Condition: "CreateResultQueue", Description: expect.any(String), Value: { Ref: "ResultQueue" } });
  });

  test("the alarm goes off when any message is visible on the dead-letter queue in a minute, and notifies the alarm topic when one is given", () => {
    const alarm = template.Resources.DeadLetterAlarm;
    expect(alarm.Type).toBe("AWS::CloudWatch::Alarm");
    expect(alarm.Condition).toBeUndefined();
    const { AlarmDescription, ...properties } = alarm.Properties;
    expect(properties).toEqual({
      AlarmName: { "Fn::Sub": "${QueueName}-deploys-dead-lettered" },
      Namespace: "AWS/SQS",
      MetricName: "ApproximateNumberOfMessagesVisible",
      Dimensions: [{ Name: "QueueName", Value: { "Fn::GetAtt": ["DeadLetterQueue", "QueueName"] } }],
      Statistic: "Maximum",
      Period: 60,
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      Threshold: 0,
      ComparisonOperator: "GreaterThanThreshold",
      TreatMissingData: "notBreaching",
      AlarmActions: { "Fn::If": ["HasAlarmTopic", [{ Ref: "AlarmTopicArn" }], { Ref: "AWS::NoValue" }] },
    });
    expect(AlarmDescription["Fn::Sub"]).toContain("${QueueName}-dlq");
    expect(template.Conditions.HasAlarmTopic).toEqual({ "Fn::Not": [{ "Fn::Equals": [{ Ref: "AlarmTopicArn" }, ""] }] });
  });

  test("with FleetTopicArn, the deploy queue subscribes to that topic, with raw delivery as chosen", () => {
    expect(template.Conditions.JoinFleet).toEqual({ "Fn::Not": [{ "Fn::Equals": [{ Ref: "FleetTopicArn" }, ""] }] });
    expect(template.Resources.FleetSubscription).toEqual({
      Type: "AWS::SNS::Subscription",
      Condition: "JoinFleet",
      Properties: {
        TopicArn: { Ref: "FleetTopicArn" },
        Region: { "Fn::Select": [3, { "Fn::Split": [":", { Ref: "FleetTopicArn" }] }] },
        Protocol: "sqs",
        Endpoint: queueArn,
        RawMessageDelivery: { Ref: "FleetRawMessageDelivery" },
      },
    });
    expect(template.Parameters.FleetRawMessageDelivery.AllowedValues).toEqual(["true", "false"]);
  });

  test("the queue policy lets SNS send to the deploy queue only on behalf of the fleet topic", () => {
    expect(template.Resources.FleetQueuePolicy).toEqual({
      Type: "AWS::SQS::QueuePolicy",
      Condition: "JoinFleet",
      Properties: {
        Queues: [{ Ref: "Queue" }],
        PolicyDocument: {
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Principal: { Service: "sns.amazonaws.com" },
              Action: "sqs:SendMessage",
              Resource: queueArn,
              Condition: { ArnEquals: { "aws:SourceArn": { Ref: "FleetTopicArn" } } },
            },
          ],
        },
      },
    });
  });

  test("FleetTopicArn admits a standard topic's ARN or nothing, and refuses a FIFO topic, since the deploy queue is standard", () => {
    expect(template.Resources.Queue.Properties.FifoQueue).toBeUndefined();
    expect(admits(template, "QueueName", "kube-pico-cd.fifo")).toBe(false);
    expect(admits(template, "FleetTopicArn", fleetTopic)).toBe(true);
    expect(admits(template, "FleetTopicArn", "arn:aws-cn:sns:cn-north-1:123456789012:fleet")).toBe(true);
    expect(admits(template, "FleetTopicArn", "")).toBe(true);
    expect(admits(template, "FleetTopicArn", `${fleetTopic}.fifo`)).toBe(false);
    expect(admits(template, "FleetTopicArn", "arn:aws:sqs:eu-west-1:123456789012:kube-pico-cd")).toBe(false);
    expect(template.Parameters.FleetTopicArn.ConstraintDescription).toContain("not a .fifo topic");
  });

  test("SharedResultQueueArn admits an SQS queue's ARN or nothing", () => {
    expect(admits(template, "SharedResultQueueArn", "arn:aws:sqs:eu-west-1:123456789012:kube-pico-cd-fleet-results")).toBe(true);
    expect(admits(template, "SharedResultQueueArn", "")).toBe(true);
    expect(admits(template, "SharedResultQueueArn", "https://sqs.eu-west-1.amazonaws.com/123456789012/kube-pico-cd-fleet-results")).toBe(false);
  });

  test("GitHubRepository may be empty only in a fleet, and then no publisher role or OIDC provider is created", () => {
    expect(template.Rules.RepositoryUnlessInFleet).toEqual({
      RuleCondition: { "Fn::Equals": [{ Ref: "FleetTopicArn" }, ""] },
      Assertions: [{ Assert: { "Fn::Not": [{ "Fn::Equals": [{ Ref: "GitHubRepository" }, ""] }] }, AssertDescription: "GitHubRepository is needed unless the stack joins a fleet (FleetTopicArn)." }],
    });
    expect(template.Resources.PublisherRole.Condition).toBe("HasRepository");
    expect(template.Conditions.CreateOidcProvider).toEqual({ "Fn::And": [{ "Fn::Equals": [{ Ref: "CreateGitHubOidcProvider" }, "true"] }, { Condition: "HasRepository" }] });
  });
});

describe("deploy/aws/fleet.yaml", () => {
  const template = readTemplate("fleet.yaml");
  const cluster = readTemplate("kube-pico-cd.yaml");
  const topic = { Ref: "Topic" };
  const sharedResults = { "Fn::GetAtt": ["ResultQueue", "Arn"] };

  test("the publisher role's only SNS action is sns:Publish on the fleet topic; otherwise it reads results", () => {
    const statements = roleStatements(template, "PublisherRole");
    expect(statements).toEqual([
      { Effect: "Allow", Action: "sns:Publish", Resource: topic },
      { Effect: "Allow", Action: readResults, Resource: sharedResults },
    ]);
    expect(actionsOf(statements).filter((a) => a.startsWith("sns:"))).toEqual(["sns:publish"]);
  });

  test("the publisher role trusts GitHub's OIDC tokens exactly as the cluster template's does, with the same parameters", () => {
    expect(trustStatements(template, "PublisherRole")).toEqual(githubTrust(mainBranchOrEnvironment));
    expect(trustStatements(template, "PublisherRole")).toEqual(trustStatements(cluster, "PublisherRole"));
    for (const parameter of ["GitHubBranch", "GitHubEnvironment"]) expect(template.Parameters[parameter]).toEqual(cluster.Parameters[parameter]);
    expect(template.Parameters.GitHubRepository.AllowedPattern).toBe("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$");
  });

  test("the plan role is optional, trusts only pull_request tokens, and may only publish to the topic and read results", () => {
    expect(template.Resources.PlanRole.Condition).toBe("CreatePlanRoleCondition");
    expect(template.Parameters.CreatePlanRole.Default).toBe("false");
    expect(trustStatements(template, "PlanRole")).toEqual(githubTrust(pullRequests));
    expect(roleStatements(template, "PlanRole")).toEqual([
      { Effect: "Allow", Action: "sns:Publish", Resource: topic },
      { Effect: "Allow", Action: readResults, Resource: sharedResults },
    ]);
  });

  test("the topic is a standard topic taking SNS's default 256 KiB messages, and at most the queues' 1 MiB", () => {
    const { Properties } = template.Resources.Topic;
    expect(Properties).toEqual({ TopicName: { Ref: "TopicName" }, MaximumMessageSize: { Ref: "TopicMaximumMessageSize" } });
    expect(template.Parameters.TopicMaximumMessageSize).toMatchObject({ Default: 262144, MinValue: 1024, MaxValue: 1048576 });
    expect(admits(template, "TopicName", "kube-pico-cd-fleet.fifo")).toBe(false);
  });

  test("other accounts may only subscribe SQS queues to the topic and send to the result queue, and only when named", () => {
    expect(template.Conditions.HasSubscriberAccounts).toEqual({ "Fn::Not": [{ "Fn::Equals": [{ "Fn::Join": ["", { Ref: "SubscriberAccountIds" }] }, ""] }] });
    const { TopicPolicy, ResultQueuePolicy } = template.Resources;
    expect(TopicPolicy.Condition).toBe("HasSubscriberAccounts");
    expect(TopicPolicy.Properties.PolicyDocument.Statement).toEqual([
      { Effect: "Allow", Principal: { AWS: { Ref: "SubscriberAccountIds" } }, Action: "sns:Subscribe", Resource: topic, Condition: { StringEquals: { "sns:Protocol": "sqs" } } },
    ]);
    expect(ResultQueuePolicy.Condition).toBe("HasSubscriberAccounts");
    expect(ResultQueuePolicy.Properties.PolicyDocument.Statement).toEqual([
      { Effect: "Allow", Principal: { AWS: { Ref: "SubscriberAccountIds" } }, Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: sharedResults },
    ]);
  });

  test("the shared result queue is the cluster template's result queue, named after the topic", () => {
    const { QueueName, ...properties } = template.Resources.ResultQueue.Properties;
    const { QueueName: _, ...clusterProperties } = cluster.Resources.ResultQueue.Properties;
    expect(QueueName).toEqual({ "Fn::Sub": "${TopicName}-results" });
    expect(properties).toEqual(clusterProperties);
    expect(template.Outputs.ResultQueueArn.Value).toEqual(sharedResults);
    expect(template.Outputs.TopicArn.Value).toEqual(topic);
  });
});
